-- Every table is a ReplacingMergeTree keyed by the record's natural id, so a message the sink
-- receives twice (redelivery after a crash) collapses to one row; queries read with FINAL.

CREATE TABLE IF NOT EXISTS {db}.scores
(
    tx_id            String,
    account_id       String,
    ts               DateTime64(3, 'UTC'),
    amount           Float64,
    currency         LowCardinality(String),
    channel          LowCardinality(String),
    direction        LowCardinality(String),
    country          LowCardinality(String),
    merchant_id      String,
    counterparty_id  String,
    device_id        String,
    score            Float32,
    tier             UInt8,
    reasons          String,   -- JSON list: indicator, value, weight, contribution, reason
    model_score      Float32,
    config_hash      LowCardinality(String),
    scenario         LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    scored_at        DateTime64(3, 'UTC'),
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX scored_at_idx scored_at TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (account_id, tx_id);

CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id         String,
    tx_id            String,
    account_id       String,
    ts               DateTime64(3, 'UTC'),
    amount           Float64,
    currency         LowCardinality(String),
    channel          LowCardinality(String),
    country          LowCardinality(String),
    score            Float32,
    tier             UInt8,
    reasons          String,
    model_score      Float32,
    config_hash      LowCardinality(String),
    scenario         LowCardinality(String),
    scored_at        DateTime64(3, 'UTC'),
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX scored_at_idx scored_at TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (account_id, alert_id);

CREATE TABLE IF NOT EXISTS {db}.dlq
(
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    key              String,
    raw              String,   -- the producer's bytes, unchanged
    reason           String,
    received_at      DateTime64(3, 'UTC'),
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (source_topic, source_partition, source_offset);

CREATE TABLE IF NOT EXISTS {db}.actions
(
    action_id        String,
    alert_id         String,
    action           LowCardinality(String),  -- acknowledge | disposition
    disposition      LowCardinality(String),  -- confirmed_fraud | false_positive | ''
    actor            String,
    comment          String,
    at               DateTime64(3, 'UTC'),
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (alert_id, action_id);
