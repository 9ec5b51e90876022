"""Each partition's models, checkpointed in the changelog-backed table ``models``.

A partition's models (:class:`riskcockpit.indicators.models.ModelSet`) move with the
partition. They are checkpointed with the batch that changed them (``checkpoint_every``: 1;
or every that many transactions), and whenever the partition moves to another worker (a
rebalance, a stop), and restored from the table when the partition is (re)assigned. A
batch's checkpoint is delivered before its records, so a worker killed before its offsets
were committed answers the batch again as it did, from models that already hold it.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from riskcockpit.indicators.models import ModelParams, ModelSet
from riskcockpit.indicators.scoring import Scorer

if TYPE_CHECKING:
    from riskcockpit.streams.batches import Outbox

log = logging.getLogger("riskcockpit.worker")


def encode(models: ModelSet) -> str:
    """A checkpoint as the table keeps it."""
    return base64.b64encode(models.dumps()).decode()


def decode(row: str, params: ModelParams) -> ModelSet:
    return ModelSet.loads(base64.b64decode(row), params)


class Checkpoints:
    """The scorer's model sets, restored from and checkpointed to ``table`` (key: the partition)."""

    def __init__(self, table, scorer: Scorer):
        self.table, self.scorer = table, scorer

    def restore(self, partition: int) -> ModelSet:
        """The partition's models: restored from its checkpoint on first use here."""
        models = self.scorer.models
        if partition not in models:
            row = self.table.get(str(partition))
            if row:
                models[partition] = decode(row, self.scorer.config.models)
                log.info("partition %d: models restored (%d transactions seen)", partition, models[partition].seen)
        return self.scorer.model_set(partition)

    def keep(self, out: Outbox, partitions, due_only: bool = False) -> None:
        """Checkpoint the models of ``partitions`` held here (with ``due_only``, those due), with ``out``'s batch."""
        for partition in sorted(set(partitions) & set(self.scorer.models)):
            models = self.scorer.models[partition]
            if not due_only or models.due_for_checkpoint():
                out.changed(self.table, partition, str(partition), encode(models))

    def forget(self, partitions) -> None:
        """The partitions moved away: another worker may advance their models; restore them if they come back."""
        for partition in partitions:
            self.scorer.models.pop(partition, None)
