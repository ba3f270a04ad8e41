"""The import path that names a user's object in a config or a fingerprint.

Its own module because the inputs (model and data factories) and the task (loss and score)
both name objects this way, and the task must not import the inputs for it."""

from __future__ import annotations

import importlib
from typing import Any


def object_label(obj: Any) -> str:
    """An import path for ``obj`` when one finds it again, else ``python:<qualified name>``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and module != "__main__" and "<" not in qualname:
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
            if found is obj:
                return f"{module}:{qualname}"
        except (ImportError, AttributeError):
            pass
    return f"python:{qualname or type(obj).__name__}"
