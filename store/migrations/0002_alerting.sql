-- Alert notifications: every delivery attempt, and every change to a silence (who, when, why).
-- ReplacingMergeTree keyed by the record's own id, like 0001: a message the sink receives twice
-- collapses to one row; two real attempts (or two changes) have two ids and stay two rows.

CREATE TABLE IF NOT EXISTS {db}.deliveries
(
    attempt_id       String,
    notification_id  String,   -- the X-Riskcockpit-Id the receiver saw
    receiver         LowCardinality(String),
    receiver_type    LowCardinality(String),
    kind             LowCardinality(String),  -- firing | repeat | escalation
    group_key        String,
    attempt          UInt16,
    status_code      Int32,    -- 0: no HTTP answer (timeout, connection error)
    latency_ms       Float64,
    error            String,
    outcome          LowCardinality(String),  -- delivered | retry | dead_letter
    alert_ids        String,   -- JSON list
    attempted_at     DateTime64(3, 'UTC'),
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX notification_idx notification_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (receiver, attempted_at, attempt_id);

CREATE TABLE IF NOT EXISTS {db}.silences
(
    event_id         String,
    silence_id       String,
    version          UInt32,
    event            LowCardinality(String),  -- created | expired
    matchers         String,   -- JSON list of Alertmanager matchers
    starts_at        DateTime64(3, 'UTC'),
    ends_at          DateTime64(3, 'UTC'),
    created_by       String,
    comment          String,
    changed_by       String,
    changed_at       DateTime64(3, 'UTC'),
    change_comment   String,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (silence_id, event_id);
