"""The pom that fetches the pinned Apache Kafka release (``riskcockpit kafka start``); this file only makes the folder package data."""
