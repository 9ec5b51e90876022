"""Topic names: the contracts between the stages, fixed here so every process agrees.

| topic | key | value | written by | read by |
|---|---|---|---|---|
| transactions | account_id | Transaction JSON (streams.contract) | producers, generator, replay | worker |
| transactions.repartition | account_id | same bytes, re-keyed | worker | worker |
| transactions.dlq | original key | original bytes; reason and source in headers | worker | sink |
| risk.scores | account_id | score record JSON (indicators.scoring) | worker | sink |
| risk.alerts | account_id | score record of tier >= 1 | worker | sink, notifiers |
| risk.actions | alert_id | acknowledge / disposition by a person | cockpit | sink |
"""

TRANSACTIONS = "transactions"
REPARTITION = "transactions.repartition"
DLQ = "transactions.dlq"
SCORES = "risk.scores"
ALERTS = "risk.alerts"
ACTIONS = "risk.actions"

ALL = (TRANSACTIONS, REPARTITION, DLQ, SCORES, ALERTS, ACTIONS)
# What the sink copies into ClickHouse.
SINK_TOPICS = (SCORES, ALERTS, DLQ, ACTIONS)

# Headers of a DLQ record: the value stays byte-for-byte what the producer sent.
H_REASON = "x-dlq-reason"
H_SOURCE_TOPIC = "x-source-topic"
H_SOURCE_PARTITION = "x-source-partition"
H_SOURCE_OFFSET = "x-source-offset"
H_SOURCE_TIMESTAMP = "x-source-timestamp"
