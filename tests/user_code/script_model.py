"""A user's script: model and data defined in __main__ (inside main()), run with worker processes.

Run as a file or fed on standard input; argv[1] is the output root, argv[2] the executor.
"""
import sys

import torch
from torch import nn

import ticketlab


def main() -> None:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(8, 16)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return {"logits": self.head(torch.relu(self.body(x)))}  # a dict, as many user models return

    def make_model():
        return Net()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    data = {"train": (x[:400], y[:400]), "val": (x[400:500], y[400:500]), "test": (x[500:], y[500:])}
    options = ticketlab.RunOptions(root=sys.argv[1], workers=2, executor=sys.argv[2], progress=False, device="cpu")
    result = ticketlab.run({"levels": 1, "seeds": 2, "controls": ["reinit"], "train": {"iterations": 200, "eval_every": 50, "lr": 0.01}},
                           options, model=make_model, data=data)
    print("DIR", result.directory)
    print("ACC", min(r["final_test_acc"] for r in result.runs))


if __name__ == "__main__":
    main()
