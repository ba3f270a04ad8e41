"""One registry for every pluggable kind: datasets, models, pruning methods and arms.

A registry is a table of built-in names to ``"package.module:object"`` import paths, imported
only when a name is used, plus optional name *patterns* (``mlp_<w1>_<w2>...``). Any other name
containing ``:`` is the user's own import path. That is what makes an extension work
everywhere: spawned worker processes, Ray tasks and ``show``/``report`` import it by name, and
the experiment's config records it. Keeping the built-ins as strings (rather than a base module
that imports its plugins so their decorators run) means no registry imports its entries at
start-up, and no plugin module imports the registry back: there are no import cycles.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

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


@dataclass(frozen=True)
class Pattern:
    """A family of built-in names (``regex``), shown in messages as ``example``."""

    regex: str
    example: str
    path: str

    def matches(self, name: str) -> bool:
        return re.fullmatch(self.regex, name) is not None


@dataclass(frozen=True, eq=False)
class Registry:
    """Built-in names of one kind (``what``: "dataset", "model", "pruning method", "control").

    ``load(name)`` returns the object a name stands for: a built-in's, a pattern's, or the one
    at the user's import path. ``instance(name)`` is for kinds whose entries are strategy
    objects (methods, arms): a class is instantiated with no arguments, the result checked
    against ``protocol``, and the answer cached (they are stateless, and the scheduler asks
    at every step). ``removed`` maps retired names to the one-line reason given instead.
    """

    what: str
    builtins: dict[str, str]
    patterns: tuple[Pattern, ...] = ()
    protocol: type | None = None
    removed: dict[str, str] = field(default_factory=dict)
    listed: tuple[str, ...] | None = None  # the names an error message offers (default: all)

    def __iter__(self) -> Iterator[str]:
        return iter(self.builtins)

    def __contains__(self, name: object) -> bool:
        """A built-in name or one matching a pattern (import paths are not "contained")."""
        return isinstance(name, str) and (name in self.builtins or any(p.matches(name) for p in self.patterns))

    def names(self) -> list[str]:
        """The names to offer a user: exact names, then one example per pattern."""
        exact = list(self.listed) if self.listed is not None else sorted(self.builtins)
        return exact + [p.example for p in self.patterns]

    def unknown(self, name: str, hint: str = " or an import path 'package.module:object'") -> ConfigError:
        return ConfigError(f"unknown {self.what} {name!r}; choose one of: {', '.join(self.names())}{hint}")

    def path(self, name: str) -> str:
        """The import path ``name`` stands for (ConfigError for an unknown or removed name)."""
        if name in self.removed:
            raise ConfigError(self.removed[name])
        if name in self.builtins:
            return self.builtins[name]
        for pattern in self.patterns:
            if pattern.matches(name):
                return pattern.path
        if ":" in name:
            return name
        raise self.unknown(name)

    def load(self, name: str) -> Any:
        return import_object(self.path(name), self.what)

    def instance(self, name: str) -> Any:
        return _instance(self, name)


@functools.lru_cache(maxsize=None)
def _instance(registry: Registry, name: str) -> Any:
    obj = registry.load(name)
    if isinstance(obj, type):
        obj = obj()
    if registry.protocol is not None and not isinstance(obj, registry.protocol):
        raise ConfigError(f"{registry.what} {name!r} does not implement {registry.protocol.__name__} "
                          f"(see {registry.protocol.__module__})")
    return obj
