"""A ticket bundle (``pack``: one level's ticket as a single self-describing .safetensors file)
and ``verify``, which re-trains it and checks its claim (``verification``)."""

from ticketlab.bundle.pack import make_bundle
from ticketlab.bundle.verification import verify

__all__ = ["make_bundle", "verify"]
