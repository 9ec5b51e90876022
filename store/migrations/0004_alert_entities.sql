-- An alert names its transaction's merchant, device and counterparty, so an analyst's verdict
-- can teach the indicators kept per merchant, device and counterparty which ones it concerned.
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS direction LowCardinality(String) DEFAULT '' AFTER amount;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS merchant_id String DEFAULT '' AFTER country;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS device_id String DEFAULT '' AFTER merchant_id;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS counterparty_id String DEFAULT '' AFTER device_id;
