"""An experiment as a graph of training units: what a unit is (``unit``), the per-process
environment it trains in, the level masks it needs, the schedule that runs the graph, the
user's inputs, the checks before the first write (``preflight``) and the audit of a whole
experiment (``audit``)."""
