"""The experiment directory: its layout (``layout``: Store, UnitPaths), the integrity of every
file against its folder's manifest (``integrity``), and the training-state file format
(``checkpoint``)."""

from ticketlab.store.layout import Store, UnitPaths

__all__ = ["Store", "UnitPaths"]
