"""Steppers: how the loop's steps are computed. Same loop, different arithmetic.

* ``dense``   one model and its optimizer, re-masked after every step (the plain PyTorch step);
* ``stacked`` K replicates stacked along a new leading dimension, one batched step for all;
* ``sparse``  a pruned MLP trained with compressed matmuls and a survivors-only optimizer;
* ``probe``   the one place that chooses among them for a unit.
"""
