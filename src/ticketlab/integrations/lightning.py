"""A Lightning callback that makes ``Trainer.fit`` one unit of a ticketlab experiment.

Inside the training function ``ticketlab.run(..., train=my_train)`` calls::

    def my_train(model, unit):                 # model: the user's LightningModule, masked and rewound
        trainer = lightning.Trainer(max_steps=unit.remaining, callbacks=[LotteryTicket(unit)],
                                    logger=False, enable_checkpointing=False)
        trainer.fit(model, train_dataloaders=loader)

After every optimizer step (``trainer.global_step`` advances; gradient accumulation included)
the callback calls ``unit.step(loss)``: pruned weights back to exactly zero, the rewind point
captured at ``rewind_iteration``. It evaluates with ticketlab's task on ticketlab's grid
(``eval_every`` and the end) or, given ``metrics=("val_loss", "val_acc")``, records what the
module logged at each validation. The optimizer is handed to ``unit.track`` so a late-rewound
ticket starts from the dense run's optimizer state at k. Fit stops at the unit's end or when
it diverges.
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning

from ticketlab.train.user_loop import TrainingUnit


def _to_logger(trainer: lightning.Trainer, record: dict) -> None:
    """ticketlab's evaluation to the user's own Lightning logger (TensorBoard, MLflow, CSV, ...),
    under ``ticketlab/``, so the unit's curves sit beside the module's own."""
    if trainer.logger is None:
        return
    values = {f"ticketlab/{key}": value for key, value in record.items()
              if key not in ("step",) and isinstance(value, (int, float)) and value is not None}
    if values:
        trainer.logger.log_metrics(values, step=trainer.global_step)


def _loss_of(outputs: Any):
    """The step's loss from what ``training_step`` returned (a tensor, or a dict with ``loss``)."""
    if isinstance(outputs, Mapping):
        return outputs.get("loss")
    return outputs if hasattr(outputs, "detach") else None


class LotteryTicket(lightning.Callback):
    """One ticketlab unit driven by ``lightning.Trainer.fit``.

    ``metrics``: the (loss, score) names the LightningModule logs in ``validation_step``, to
    record at each validation instead of ticketlab's own evaluation; None (default): ticketlab
    evaluates the model on the run's data every ``eval_every`` steps and at the end.
    ``track_optimizer``: hand the trainer's first optimizer to ``unit.track``.
    """

    def __init__(self, unit: TrainingUnit, metrics: tuple[str, str] | None = None, track_optimizer: bool = True):
        super().__init__()
        self.unit, self.metrics, self.track_optimizer = unit, metrics, track_optimizer

    def on_train_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        if pl_module is not self.unit.model:
            raise ValueError("LotteryTicket(unit) must train the model ticketlab handed to the training function")
        if self.track_optimizer and trainer.optimizers:
            self.unit.track(trainer.optimizers[0])

    def on_train_batch_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        unit = self.unit
        if unit.done:
            trainer.should_stop = True
            return
        if unit.start + trainer.global_step > unit.iteration:  # an optimizer step happened in this batch
            unit.step(_loss_of(outputs))
            if self.metrics is None and unit.eval_due and not unit.diverged:
                _to_logger(trainer, unit.evaluate())
        if unit.done:
            trainer.should_stop = True

    def on_validation_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        if self.metrics is None or trainer.sanity_checking or self.unit.diverged:
            return
        logged = trainer.callback_metrics
        missing = [name for name in self.metrics if name not in logged]
        if missing:
            raise KeyError(f"LotteryTicket(metrics={self.metrics}): the module did not log {missing[0]!r} in "
                           f"validation (logged: {sorted(logged)})")
        _to_logger(trainer, self.unit.evaluate(val=tuple(float(logged[name]) for name in self.metrics)))
