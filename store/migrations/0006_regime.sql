-- Each decision says which regime scored it: label-free evidence alone, blended with the
-- supervised model, or mostly the supervised model; and the label-free score beside the final one.
ALTER TABLE {db}.scores ADD COLUMN IF NOT EXISTS regime LowCardinality(String) DEFAULT 'label-free' AFTER features;
ALTER TABLE {db}.scores ADD COLUMN IF NOT EXISTS label_free_score Float32 DEFAULT -1 AFTER regime;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS regime LowCardinality(String) DEFAULT 'label-free' AFTER features;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS label_free_score Float32 DEFAULT -1 AFTER regime;
