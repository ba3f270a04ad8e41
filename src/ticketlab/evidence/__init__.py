"""The evidence: intervals and paired bounds (``stats``), verdicts with their stated criteria
(``verdicts``), the per-level table (``tables``) and the compute a mask removes (``flops``)."""
