-- Each decision keeps the feature vector its models saw and the supervised model's probability,
-- so it can be recomputed, explained and taught later (-1: the model did not contribute yet).
ALTER TABLE {db}.scores ADD COLUMN IF NOT EXISTS fraud_probability Float32 DEFAULT -1 AFTER model_score;
ALTER TABLE {db}.scores ADD COLUMN IF NOT EXISTS features String DEFAULT '{}' AFTER fraud_probability;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS fraud_probability Float32 DEFAULT -1 AFTER model_score;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS features String DEFAULT '{}' AFTER fraud_probability;
