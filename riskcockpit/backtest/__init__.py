"""The backtest: a historical file read and mapped (:mod:`.history`), scored by the worker's
pipeline staged as the worker stages it (:mod:`.stages`, :mod:`.run`), and measured
(:mod:`.metrics`)."""
