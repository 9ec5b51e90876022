"""The ground floor: what every part of riskcockpit shares, importing nothing else of ours.

- :mod:`.contract`: the transaction contract, parsed and validated once at the edge;
- :mod:`.topics`: topic names and the headers between stages;
- :mod:`.settings`: the configuration, read from YAML and the environment, with errors that
  name file, line and field;
- :mod:`.kafka`: the security options of every Kafka client, and the topics a component needs;
- :mod:`.runtime`: process tuning shared by the long-running commands.
"""
