"""Find a pruning method or an arm by name (built in) or by ``"package.module:object"`` path.

An import path is what makes an extension work everywhere: spawned worker processes, Ray
tasks and ``show``/``report`` import it by name, and the experiment's config records it. The
object may be an instance or a class (instantiated with no arguments).
"""

from __future__ import annotations

import importlib
from typing import Any
from ticketlab.errors import ConfigError


def import_object(path: str, what: str) -> Any:
    """``"package.module:attribute.path"`` -> the object; ConfigError saying what failed."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{what} {path!r} is neither a known name nor an import path 'package.module:object'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module may fail in any way
        raise ConfigError(f"{what} {path!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} {path!r}: {module_name} has no attribute {attribute}") from None
    return obj


def resolve_plugin(name: str, builtin: dict[str, str], protocol: type, what: str) -> Any:
    obj = import_object(builtin.get(name, name), what)
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, protocol):
        raise ConfigError(f"{what} {name!r} does not implement {protocol.__name__} (see ticketlab.pruning.base)")
    return obj


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
