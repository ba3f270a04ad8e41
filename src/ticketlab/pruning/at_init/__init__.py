"""Pruning at initialisation: SNIP, GraSP, SynFlow, magnitude and random, each keeping exactly
the number of weights IMP keeps at the same level (what they share is in ``common``)."""
