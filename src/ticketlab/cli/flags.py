"""CLI flags made from the config dataclasses' fields, as Hugging Face's ``HfArgumentParser`` does.

Every user-settable field of :class:`~ticketlab.config.Config` (with its ``data``, ``train`` and
``prune`` tables) and of :class:`~ticketlab.config.RunOptions` is one flag of ``ticketlab run``:
``--train.lr`` for a field of a table (``--train.batch_size`` works too: ``_`` and ``-`` are the
same in flag names), ``--levels`` for a top-level field, and beside them the short names that
README, the scripts and the tests have always used (:data:`SHORT_NAMES`). So a new field is a
new flag with nothing else to edit:

* the help is the field's ``setting(default, help)`` in ``config.py`` (one place);
* the syntax comes from the field's annotation: numbers and strings as themselves, ``none`` for
  an optional field's None, tuples as comma-separated lists, ``layer_rates`` as
  ``regex=rate,...`` or a JSON object, a ``Literal``'s values shown as the choices;
* the value is checked only by ``Config.from_dict``/``Config.validate`` and
  ``RunOptions.validate``: a flag only turns text into the annotated type.

Fields that ``ticketlab.run`` fills in get no flag: those declared ``recorded(...)`` in
``config.py`` (``model_fingerprint``, ``task``, ``task_fingerprint``, ``train_loop``, ``data.fingerprint``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Optional, get_args, get_origin

import typer

from ticketlab.config import Config, RunOptions
from ticketlab.errors import ConfigError

#: Flags older than the dotted names, each kept working beside its field's dotted flag.
SHORT_NAMES: dict[str, str] = {
    "data.dataset": "--dataset", "data.data_dir": "--data-dir", "data.version": "--data-version",
    "train.optimizer": "--optimizer", "train.lr": "--lr", "train.weight_decay": "--weight-decay",
    "train.batch_size": "--batch-size", "train.iterations": "--iterations", "train.epochs": "--epochs",
    "train.eval_every": "--eval-every", "train.test_every_eval": "--test-every-eval",
    "prune.method": "--method", "prune.strategy": "--strategy", "prune.rate": "--rate",
    "prune.output_rate": "--output-rate", "prune.roles": "--roles",
}
#: RunOptions fields whose flag is not their name (``root`` has always been ``--out``).
OPTION_NAMES: dict[str, str] = {"root": "--out"}

#: A flag's value "none": set the optional field to None (None itself means "flag not given").
NULL: Any = type("Null", (), {"__repr__": lambda self: "NULL"})()

PANELS = {"": "Experiment", "data": "Data", "train": "Training", "prune": "Pruning",
          "sequential": "Sequential seeds (seeds = auto)"}
OPTIONS_PANEL = "Execution (not part of the experiment's name)"


@dataclass(frozen=True)
class Flag:
    """One settable field: its dotted key in the raw config (or RunOptions name) and its declaration."""

    key: str
    hint: Any
    help: str
    default: Any
    names: tuple[str, ...]

    @property
    def param(self) -> str:
        """The callback's keyword for this flag (an identifier: ``train.lr`` -> ``train__lr``)."""
        return self.key.replace(".", "__")


def settable(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """``(dotted key, field, resolved annotation)`` of every field of ``cls`` a user sets,
    descending into nested dataclasses; ``recorded`` fields (filled in by the API) are left out."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            yield from settable(hints[f.name], f"{key}.")
        elif "recorded" not in f.metadata:
            yield key, f, hints[f.name]


def _flags(cls: type, names: Callable[[str], tuple[str, ...]]) -> tuple[Flag, ...]:
    return tuple(Flag(key, hint, f.metadata.get("help", ""), _default(f), names(key)) for key, f, hint in settable(cls))


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _config_names(key: str) -> tuple[str, ...]:
    """``--levels``; ``--train.batch-size`` and its short name ``--batch-size``."""
    primary = "--" + key.replace("_", "-")
    return (primary, SHORT_NAMES[key]) if key in SHORT_NAMES else (primary,)


def _option_names(key: str) -> tuple[str, ...]:
    return (OPTION_NAMES.get(key, "--" + key.replace("_", "-")),)


CONFIG_FLAGS: tuple[Flag, ...] = _flags(Config, _config_names)
OPTION_FLAGS: tuple[Flag, ...] = _flags(RunOptions, _option_names)


def normalize(token: str) -> str:
    """Flag names with ``_`` read as ``-``: ``--prune.nm_group`` is ``--prune.nm-group``, as the
    config file spells the key."""
    return token.replace("_", "-")


# ---------------------------------------------------------------------------- typer parameters
def parameters(flags: tuple[Flag, ...], panel: Callable[[Flag], str]) -> list[inspect.Parameter]:
    """Keyword parameters (default None: not given) whose ``typer.Option`` declares each flag."""
    return [inspect.Parameter(flag.param, inspect.Parameter.KEYWORD_ONLY, default=_option(flag, panel(flag)),
                              annotation=Optional[bool] if _base(flag.hint) is bool else Optional[str])
            for flag in flags]


def config_panel(flag: Flag) -> str:
    return PANELS[flag.key.rpartition(".")[0]]


def _option(flag: Flag, panel: str) -> Any:
    shown = _shown(flag.default)
    common: dict[str, Any] = {"help": f"{flag.help} (default: {shown})" if shown else flag.help,  # not [..]: markup
                              "rich_help_panel": panel, "show_default": False}
    if _base(flag.hint) is bool:
        primary, *aliases = flag.names
        return typer.Option(None, f"{primary}/--no-{primary[2:]}", *aliases, **common)
    return typer.Option(None, *flag.names, parser=parser(flag.hint), metavar=metavar(flag.hint), **common)


def _shown(default: Any) -> str:
    """The default as a flag would spell it (empty for None and empty collections)."""
    if default is None or default == () or default == {}:
        return ""
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default).lower() if isinstance(default, bool) else str(default)


def _base(hint: Any) -> Any:
    """``X`` of ``X | None``; ``hint`` itself otherwise (also for a union such as ``int | Literal["auto"]``)."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return hint


def _alternatives(hint: Any) -> tuple[Any, ...]:
    """The members of a union that is not just ``X | None`` (``int | Literal["auto"]``), else ()."""
    return get_args(hint) if get_origin(hint) in (typing.Union, types.UnionType) else ()


def _optional(hint: Any) -> bool:
    return get_origin(hint) in (typing.Union, types.UnionType) and type(None) in get_args(hint)


def metavar(hint: Any) -> str:
    """What the flag takes, from the annotation: ``INT``, ``[adam|adamw|sgd]``, ``INT,...``."""
    base = _base(hint)
    if _alternatives(base):
        word = "|".join(metavar(arg) for arg in _alternatives(base))
    elif get_origin(base) is Literal:
        word = "[" + "|".join(map(str, get_args(base))) + "]"
    elif get_origin(base) is tuple:
        word = f"{metavar(get_args(base)[0])},..."
    elif get_origin(base) is dict:
        word = "REGEX=RATE,...|JSON"
    else:
        word = {int: "INT", float: "FLOAT"}.get(base, "TEXT")
    return f"{word}|none" if _optional(hint) else word


def parser(hint: Any) -> Callable[[str], Any]:
    """Text to the annotated type; only syntax is refused here (``typer.BadParameter``), values
    are the config's to judge."""
    base = _base(hint)
    if get_origin(base) is tuple:
        convert = _list_of(get_args(base)[0])
    elif get_origin(base) is dict:
        convert = _rates
    else:
        convert = _scalar(base)
    if not _optional(hint):
        return convert
    return lambda text: NULL if text.strip().lower() in ("none", "null") else convert(text)


def _scalar(hint: Any) -> Callable[[str], Any]:
    if int in _alternatives(hint):  # ``int | Literal["auto"]``: a number when it reads as one
        def number_or_word(text: str) -> Any:
            try:
                return int(text)
            except ValueError:
                return text
        return number_or_word
    if hint in (int, float):
        def number(text: str) -> Any:
            try:
                return hint(text)
            except ValueError:
                raise typer.BadParameter(f"{text!r} is not {'an integer' if hint is int else 'a number'}") from None
        return number
    return str  # strings and Literal values: Config.from_dict says which values are allowed


def _list_of(item: Any) -> Callable[[str], list[Any]]:
    """Comma-separated items; empty parts are dropped, so ``""`` is the empty list."""
    def items(text: str) -> list[Any]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if item is not int:
            return parts
        try:
            return [int(part) for part in parts]
        except ValueError:
            raise typer.BadParameter(f"takes comma-separated integers like 3,7,12, got {text!r}") from None
    return items


def _rates(text: str) -> dict[str, Any]:
    """``"fc1=0.3,conv.*=0.1"`` or the JSON object ``{"fc1": 0.3}`` (for a regex with a comma)."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise typer.BadParameter(f"is not a JSON object: {exc}") from None
        if not isinstance(value, dict):
            raise typer.BadParameter("must be a JSON object of regex: rate")
        return value
    rates: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        pattern, equals, rate = part.rpartition("=")
        if not equals or not pattern:
            raise typer.BadParameter(f"takes regex=rate pairs like 'fc1=0.3,conv.*=0.1', got {part!r}")
        rates[pattern] = _scalar(float)(rate)
    return rates


# ---------------------------------------------------------------------------- values to config
def given(flags: tuple[Flag, ...], values: dict[str, Any]) -> dict[str, Any]:
    """``{dotted key: value}`` of the flags given (``NULL`` turned into None)."""
    out = {}
    for flag in flags:
        value = values.get(flag.param)
        if value is not None:
            out[flag.key] = None if value is NULL else value
    return out


def apply(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (a config file's tables) with each dotted override put in place.

    One training length replaces the other: ``--epochs 2`` on a file (or default) giving
    iterations trains 2 epochs, as it always has (both given stay both, for the config to refuse).
    """
    if "train.iterations" in overrides or "train.epochs" in overrides:
        overrides = {"train.iterations": None, "train.epochs": None, **overrides}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        _table(raw, parents)[leaf] = value
    return raw


def _table(raw: dict[str, Any], parents: list[str]) -> dict[str, Any]:
    """The nested table at ``parents`` (created if absent); ConfigError if the file has a non-table there."""
    for depth, parent in enumerate(parents):
        raw = raw.setdefault(parent, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{'.'.join(parents[:depth + 1])} must be a table/object, got {type(raw).__name__}")
    return raw
