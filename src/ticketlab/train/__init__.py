"""Training: the one loop (``loop``), what happens at its events (``events``), optimizers and the
schedule (``optim``), the loss and score (``task``), evaluating stored weights (``evaluation``),
and how a step is computed (``steppers/``). Nothing here knows about the store or the arms."""
