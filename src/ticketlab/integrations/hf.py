"""A Hugging Face ``TrainerCallback`` that makes ``transformers.Trainer.train`` one ticketlab unit.

Inside the training function ``ticketlab.run(..., train=my_train)`` calls::

    def my_train(model, unit):                 # model: the user's PreTrainedModel, masked and rewound
        args = TrainingArguments(output_dir=..., max_steps=unit.remaining, report_to=[], save_strategy="no")
        Trainer(model=model, args=args, train_dataset=train_set,
                callbacks=[LotteryTicketCallback(unit)]).train()

``on_step_end`` runs after every optimizer step (after the scheduler and ``zero_grad``; with
gradient accumulation, once per accumulated step): the callback calls ``unit.step()``, so
pruned weights are exactly zero again before the next forward pass and the rewind point is
captured at ``rewind_iteration``. It evaluates with ticketlab's task on ticketlab's grid, or,
given ``metrics=("eval_loss", "eval_accuracy")``, records the Trainer's own evaluations. The
Trainer's optimizer goes to ``unit.track``; training stops at the unit's end or on divergence.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ticketlab.train.user_loop import TrainingUnit


class LotteryTicketCallback(TrainerCallback):
    """One ticketlab unit driven by ``transformers.Trainer``.

    ``metrics``: the (loss, score) keys of the Trainer's evaluation metrics (``compute_metrics``
    adds the score, prefixed ``eval_``) to record at each of its evaluations; None (default):
    ticketlab evaluates on the run's data every ``eval_every`` steps and at the end.
    """

    def __init__(self, unit: TrainingUnit, metrics: tuple[str, str] | None = None, track_optimizer: bool = True):
        self.unit, self.metrics, self.track_optimizer = unit, metrics, track_optimizer

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, optimizer: Any = None, **kwargs: Any) -> None:
        if model is not None and model is not self.unit.model:
            raise ValueError("LotteryTicketCallback(unit) must train the model ticketlab handed to the training function")
        if self.track_optimizer and optimizer is not None:
            self.unit.track(optimizer)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> TrainerControl:
        unit = self.unit
        if not unit.done:
            unit.step()
            if self.metrics is None and unit.eval_due and not unit.diverged:
                unit.evaluate()
        if unit.done:
            control.should_training_stop = True
            if self.metrics is not None and not unit.diverged:
                control.should_evaluate = True  # the unit's last evaluation is at its last step
        return control

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.metrics is None or self.unit.diverged or not metrics:
            return
        missing = [name for name in self.metrics if name not in metrics]
        if missing:
            raise KeyError(f"LotteryTicketCallback(metrics={self.metrics}): the evaluation has no {missing[0]!r} "
                           f"(it has: {sorted(metrics)}); add it with compute_metrics")
        self.unit.evaluate(val=tuple(float(metrics[name]) for name in self.metrics))
