"""Lottery tickets with the Hugging Face ``Trainer``: a tiny BERT (built from a config, no download).

Demonstrates ``ticketlab.integrations.hf.LotteryTicketCallback``: the training function
``ticketlab.run`` calls once per training (dense run, tickets, controls) fine-tunes the model
ticketlab handed it, masked and rewound, with ``transformers.Trainer``: its own AdamW, its
linear learning-rate decay, its data collation and its evaluation loop with
``compute_metrics``. The callback re-masks after every optimizer step (``on_step_end``),
captures the rewind point, hands the Trainer's optimizer to ticketlab and records the
Trainer's ``eval_loss``/``eval_accuracy`` at each of its evaluations. Masks, rewinding,
controls, seeds, the store and the verdicts stay ticketlab's.

The task is ``hf_bert.py``'s (is token A before token B?), handed over as a tokenizer would:
sequences of 8 to 16 tokens padded to 16, in dicts of ``input_ids``, ``attention_mask`` and
``labels``. ticketlab keeps them as they are (``unit.data.x_train`` is that dict without the
labels), so the Trainer collates the same dicts it would collate without ticketlab.

Needs ``transformers`` and ``accelerate``: ``pip install ticketlab[hf]``.

Run::

    python docs/examples/hf_trainer.py            # 2 levels, a few minutes on one CPU thread
    python docs/examples/hf_trainer.py --quick    # a smoke test
"""

from __future__ import annotations

import sys
import tempfile

import torch

from _report import command_line, run_example
from hf_bert import A, B, LENGTH, VOCAB, make_model


def padded_order_data(n: int = 3000, seed: int = 0) -> dict:
    """``hf_bert``'s task with sequences of 8 to 16 tokens, padded with token 0 to 16: splits of
    dicts with ``input_ids``, ``attention_mask`` (1: a real token) and ``labels``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, LENGTH + 1, (n,), generator=g)
    mask = (torch.arange(LENGTH) < lengths[:, None]).long()
    x = torch.randint(3, VOCAB, (n, LENGTH), generator=g)
    positions = (torch.rand(n, LENGTH, generator=g) + (1 - mask)).argsort(dim=1)[:, :2]  # two real places
    x.scatter_(1, positions[:, :1], A)
    x.scatter_(1, positions[:, 1:], B)
    x = x * mask  # padding: token 0
    y = (positions[:, 0] < positions[:, 1]).long()
    cuts = [0, int(0.7 * n), int(0.85 * n), n]
    return {name: {"input_ids": x[a:b], "attention_mask": mask[a:b], "labels": y[a:b]}
            for name, a, b in zip(("train", "val", "test"), cuts, cuts[1:])}


class TokenTask(torch.utils.data.Dataset):
    """Named input tensors and labels as the per-example dicts a ``transformers.Trainer`` collates."""

    def __init__(self, x: dict[str, torch.Tensor], y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{name: values[i] for name, values in self.x.items()}, "labels": self.y[i]}


def accuracy(prediction) -> dict[str, float]:
    """``compute_metrics``: the fraction of sequences classified right."""
    logits, labels = prediction.predictions, prediction.label_ids
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def my_train(model, unit) -> None:
    """Fine-tune ``model`` for the unit's remaining steps with the Trainer, evaluating on its grid."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from ticketlab.integrations.hf import LotteryTicketCallback

    data = unit.data  # x_train: {"input_ids": ..., "attention_mask": ...}, as given to ticketlab.run
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer wants an output folder; nothing is saved
        args = TrainingArguments(
            output_dir=scratch, max_steps=unit.remaining, per_device_train_batch_size=32, learning_rate=1e-3,
            eval_strategy="steps", eval_steps=unit.eval_every, per_device_eval_batch_size=256,
            save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True,
            seed=unit.seed % 2**31, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=TokenTask(data.x_train, data.y_train),
                          eval_dataset=TokenTask(data.x_val, data.y_val), compute_metrics=accuracy,
                          callbacks=[LotteryTicketCallback(unit, metrics=("eval_loss", "eval_accuracy"))])
        trainer.remove_callback(PrinterCallback)  # ticketlab's printout says what matters
        trainer.train()


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)
    try:
        import accelerate  # noqa: F401  (the Trainer needs it)
        import transformers  # noqa: F401
    except ImportError:
        sys.exit("this example needs Hugging Face transformers and accelerate: pip install transformers accelerate")
    config = {
        "levels": 2, "seeds": 1, "controls": ["reinit", "random"],
        "prune": {"rate": 0.4},
        "train": {"iterations": 300, "eval_every": 50, "batch_size": 32},
    }
    if args.quick:
        config.update(levels=1, train={"iterations": 20, "eval_every": 10, "batch_size": 32})
    return run_example(config, args, model=make_model, data=padded_order_data(), train=my_train)


if __name__ == "__main__":
    main()
