"""Alert notifications: route tiered alerts to the people who handle them, once, signed, never flooding.

Two loops, each a thin Kafka shell around plain classes that tests drive without a broker:

- the notifier (``notifier.NotifierService``) folds ``risk.alerts``, ``risk.actions`` and
  ``risk.silences`` into routing, grouping, inhibition, silences and escalation
  (``notifier.Notifier``) and emits notification jobs to ``risk.notifications``;
- the delivery loop (``delivery.DeliveryService``) sends each job to its receiver, signed and
  rate-limited, retrying with backoff (``delivery.Deliverer``), records every attempt on
  ``risk.deliveries`` and dead-letters what never got through to ``risk.notifications.dlq``.

See ``alerting/README.md`` for the configuration, the guarantees and the receiver-side check.
"""
