-- Every scoring config a worker has run, by its hash: each decision names the hash of its
-- config, and an auditor recomputing the decision years later needs the config itself.
CREATE TABLE IF NOT EXISTS {db}.configs
(
    config_hash      String,
    config           String,   -- JSON of the validated config, as hashed
    source           String,   -- the file it was read from, on the worker that published it
    published_at     DateTime64(3, 'UTC'),
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY config_hash;
