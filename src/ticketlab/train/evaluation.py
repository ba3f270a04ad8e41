"""Evaluate stored weights the way training evaluated them.

The numbers in a unit's summary come from the loop's evaluations (``SingleStepper.evaluate``
over ``eval_batches``); re-scoring a weight file through the same code reproduces them bit for
bit on the same build, which is what lets a reader (or ``ticketlab verify``) check that a
weight file is the one the table talks about.
"""

from __future__ import annotations

import torch

from ticketlab.train.loop import eval_batches
from ticketlab.train.steppers.dense import SingleStepper
from ticketlab.weights import load_state


def evaluate_stored_weights(env, weights: dict[str, torch.Tensor],
                            splits: tuple[str, ...] = ("val", "test")) -> dict[str, float]:
    """``<split>_loss`` and ``<split>_acc`` of ``weights`` for each of ``splits`` on ``env``'s data
    (``env``: a :class:`ticketlab.experiment.environment.Environment`; the accuracy is the task's score)."""
    model = env.build(0)
    load_state(model, {k: v.to(env.device) for k, v in weights.items()})
    stepper = SingleStepper(model, None, env.task, env.data, None)
    with torch.no_grad():
        scores = [stepper.evaluate(eval_batches(env.data, split)) for split in splits]
    values = torch.cat([t for pair in scores for t in pair]).tolist()
    return dict(zip((f"{split}_{kind}" for split in splits for kind in ("loss", "acc")), values))
