"""How masks are made: magnitude pruning (layerwise or global) and the controls' masks."""

from ticketlab.pruning.magnitude import count_to_prune, layer_rates, magnitude_prune
from ticketlab.pruning.controls import random_mask_like

__all__ = ["count_to_prune", "layer_rates", "magnitude_prune", "random_mask_like"]
