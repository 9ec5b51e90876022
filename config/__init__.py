"""The default configuration that ships with riskcockpit: YAML a risk officer reads; this file only makes the folder package data."""
