"""One-shot magnitude pruning: every level's mask is pruned from the *dense* trained network in
one step, to exactly the weights IMP keeps after that many rounds (Frankle & Carbin 2019 compare
one-shot with iterative pruning this way).

Pruning the same fixed weights again removes the next-smallest survivors, so applying
``magnitude_prune`` L times to the dense trained weights keeps the top weights at precisely
IMP's level-L counts (per layer when layerwise, across layers when global). Level L's mask is
therefore level L-1's pruned once more from the dense weights: the masks are nested and need
only level 0 trained, so every level trains in parallel (and ``ticket_levels`` may pick a few).
"""

from __future__ import annotations

from ticketlab.masks import Mask
from ticketlab.pruning.base import MaskContext, Need
from ticketlab.pruning.magnitude import pruned_by_trained


class OneShotMagnitude:
    name = "oneshot"

    def needs(self, level: int) -> set[Need]:
        return {Need.DENSE_TRAINED}

    def next_mask(self, ctx: MaskContext) -> Mask:
        return pruned_by_trained(ctx, 0)
