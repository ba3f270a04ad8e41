"""Evaluate stored weights the way training evaluated them.

The numbers in a unit's summary come from the loop's evaluations (``SingleStepper.evaluate``
over ``eval_batches``); re-scoring a weight file through the same code reproduces them bit for
bit on the same build, which is what lets a reader (or ``ticketlab verify``) check that a
weight file is the one the table talks about.
"""

from __future__ import annotations

import torch

from ticketlab.loop import eval_batches
from ticketlab.steppers import SingleStepper
from ticketlab.weights import load_state


def evaluate_weights(env, weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """``val_loss``, ``val_acc``, ``test_loss`` and ``test_acc`` of ``weights`` on ``env``'s data
    (``env``: a :class:`ticketlab.units.Environment`; the accuracy is the task's score)."""
    model = env.build(0)
    load_state(model, {k: v.to(env.device) for k, v in weights.items()})
    stepper = SingleStepper(model, None, env.task, env.data, None)
    with torch.no_grad():
        val_loss, val_acc = stepper.evaluate(eval_batches(env.data, "val"))
        test_loss, test_acc = stepper.evaluate(eval_batches(env.data, "test"))
    values = torch.cat([val_loss, val_acc, test_loss, test_acc]).tolist()
    return dict(zip(("val_loss", "val_acc", "test_loss", "test_acc"), values))
