"""Run files: ``charrnn train --config run.toml``, and the ``config.toml`` a run keeps.

A run file is TOML (read with the standard library's tomllib). Every option of ``charrnn
train`` may be in it, named as its flag without the dashes (``hidden-size``; ``hidden_size``
is accepted too), either at the top or in a section named after the option's help panel
(``[model]``, ``[optimisation]``, ``[sequence-to-sequence]``, ...; any option may go in any
of them: the sections are for the reader). ``task`` and ``corpus`` (one path or a list;
relative paths count from the working directory, as on the command line) name the data,
so a run file describes a whole experiment::

    task = "classify"
    corpus = ["sst2/train.tsv"]

    [model]
    hidden-size = 256
    pool = "max"

    [optimisation]
    lr = 0.002

    [input]
    val-file = "sst2/dev.tsv"

The file's values become click's *default map*: they count as given (``explicit`` in
common.py sees ``ParameterSource.DEFAULT_MAP``), they are checked and converted exactly as
the same flags would be, and a flag on the command line wins over the file. An unknown key
or section, a value of the wrong type or out of range is one ConfigError line naming the
file and the key. Four options are refused in a file because they say what to do this
time rather than what the run is: ``config``, ``resume``, ``overwrite`` and ``nproc``.

When a command saves a checkpoint, rank 0 writes the run's resolved configuration to
``RUN/config.toml`` (atomically): the task, the corpus, and every option that applies to
the task with the value the run used: the model and training settings as the checkpoint
holds them (so a size chosen from this machine's speed, a task's own default learning
rate or epochs, are pinned), the other options as given or defaulted. ``charrnn train
--config RUN/config.toml --out NEW`` repeats the run: same data, same seed, same first
losses. With ``--resume`` a run file gives only the data (corpus, task, out, validation
and column options) and the options a resume may change (limits, intervals, hardware,
divergence); the run keeps the rest, and its config.toml is updated with the new limits.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import os
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import typer

from .. import __version__
from ..errors import CharrnnError, ConfigError
from ..files import LATEST, atomic_write
from ..training.runfile import load_toml, toml_value
from .completion import RUN_FILE


META = "charrnn.runfile"  # ctx.meta key: (run file, its values by parameter name)
NOT_IN_FILE = {
    "config": "a run file cannot name another run file",
    "resume": "give --resume on the command line (a run file describes a run, not what to do with one that exists)",
    "overwrite": "give --overwrite on the command line (a run file describes a run, not what to do with one that "
                 "exists)",
    "nproc": "give --nproc on the command line (it says how to start this command's processes)",
}
# How this command shows progress, not what the run is. --tensorboard is an output
# location like --out, but unlike --out it is not kept either: 'train --config
# RUN/config.toml --out NEW' would send the new run's events into the old run's directory,
# where a new run purges the events already there (cli/tensorboard.py). A run file may
# still name it, and --resume may give it.
NOT_SAVED = {"quiet", "json_out", "tensorboard"}
# What a run file may give to --resume: where the data is, and what a resume may change.
ON_RESUME = {"corpus", "task", "out", "val_file", "replace_invalid", "text_column", "label_column", "max_steps",
             "epochs", "time_budget", "eval_interval", "log_interval", "device", "precision", "threads",
             "rollback_after", "max_rollbacks", "rollback_lr_factor", "quiet", "json_out", "tensorboard"}
TOP = ("task", "corpus")  # keys written before any section
DERIVED = {"vocab_size"}  # config fields named as an option but set from the data (a model's vocabulary)


# ----------------------------------------------------------------------------- names


def _key(param) -> str:
    """A parameter's name in a run file: its long flag without the dashes."""
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0][2:] if longs else param.name.replace("_", "-")


def _section(param) -> str | None:
    panel = getattr(param, "rich_help_panel", None)
    return panel.lower().replace(" ", "-") if panel else None


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _params(command) -> dict[str, Any]:
    """key -> click parameter, for every parameter a run file may name (and the refused ones)."""
    return {_key(p): p for p in command.params if p.name is not None and not getattr(p, "hidden", False)
            and p.name not in ("help",)}


# ----------------------------------------------------------------------------- reading


def read(path: Path, command) -> dict[str, Any]:
    """The values of run file ``path`` by parameter name, checked against ``command``'s
    parameters (types, ranges, choices); every mistake is one ConfigError line."""
    data = load_toml(path)
    params = _params(command)
    hints = get_type_hints(inspect.unwrap(command.callback), include_extras=True)
    sections = {s for s in (_section(p) for p in params.values()) if s}
    values: dict[str, Any] = {}
    where: dict[str, str] = {}

    def take(key: str, value: Any, section: str | None) -> None:
        place = f"{key} in [{section}]" if section else key
        name = _norm(key)
        if name not in params:
            close = difflib.get_close_matches(name, list(params) + list(sections), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else " (keys are the options of 'charrnn train --help')"
            raise ConfigError(f"{path}: unknown key '{key}'{f' in [{section}]' if section else ''}{hint}")
        param = params[name]
        if param.name in NOT_IN_FILE:
            raise ConfigError(f"{path}: {place}: {NOT_IN_FILE[param.name]}")
        if param.name in values:
            raise ConfigError(f"{path}: {name} is given twice ({where[param.name]} and {place})")
        values[param.name], where[param.name] = _checked(path, place, hints[param.name], value), place

    for key, value in data.items():
        if isinstance(value, dict):
            if _norm(key) not in sections:
                raise ConfigError(f"{path}: unknown section [{key}] (sections: {', '.join(sorted(sections))}; or "
                                  f"no section at all)")
            for inner, v in value.items():
                if isinstance(v, dict):
                    raise ConfigError(f"{path}: [{key}.{inner}]: sections do not nest")
                take(inner, v, key)
        else:
            take(key, value, None)
    return values


def _spec(hint) -> tuple[Any, bool, Any, Any]:
    """(value type, whether a list, min, max) of an option from its annotation in the
    command's signature (``Annotated[int, typer.Option(min=1)]``): the declaration itself,
    whichever typer version parses it."""
    info = None
    if get_origin(hint) is Annotated:
        hint, info = get_args(hint)[0], get_args(hint)[1]
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    many = get_origin(hint) in (list, tuple)
    if many:
        hint = get_args(hint)[0]
    return hint, many, getattr(info, "min", None), getattr(info, "max", None)


def _check_one(kind, low, high, value: Any) -> str | None:
    """What is wrong with ``value`` for an option of type ``kind`` in [low, high], or None."""
    if kind is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = [m.value for m in kind]
        return None if value in choices else "expected one of " + ", ".join(f'"{c}"' for c in choices)
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        return "expected a whole number"
    if kind is float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return "expected a number"
    if kind in (int, float):
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = " and ".join(b for b in (low is not None and f"at least {low}", high is not None
                                              and f"at most {high}") if b)
            return f"out of range (expected {bounds})"
        return None
    return None if isinstance(value, str) else "expected a string"


def _checked(path: Path, place: str, hint, value: Any) -> Any:
    kind, many, low, high = _spec(hint)
    items = (value if isinstance(value, list) else [value]) if many else [value]
    wrong = "expected a list of strings" if many and not items else next(
        (w for w in (_check_one(kind, low, high, v) for v in items) if w), None)
    if wrong:
        raise ConfigError(f"{path}: {place} = {_toml(value)}: {wrong}")
    if many:
        return items
    return float(value) if kind is float else value


# ----------------------------------------------------------------------------- callbacks


def load(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``--config``'s callback (an eager option, so it runs before every other option reads
    its value): the run file's values become the command's default map."""
    if value is None or ctx.resilient_parsing:
        return value
    values = read(Path(value), ctx.command)
    ctx.meta[META] = (Path(value), values)
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def on_resume(ctx: typer.Context, param: typer.CallbackParam, value: bool) -> bool:
    """``--resume``'s callback: a resumed run keeps its own model, tokenizer and training
    settings, so a run file gives it only the data and what a resume may change. (Options
    given on the command line are processed before those that are not, so this runs before
    any option reads the default map.)"""
    if value and META in ctx.meta and ctx.default_map:
        ctx.default_map = {k: v for k, v in ctx.default_map.items() if k in ON_RESUME}
    return value


# ----------------------------------------------------------------------------- writing


def _toml(value: Any) -> str:
    """A TOML value: true/false, integers, floats, strings, lists of these."""
    if not isinstance(value, (bool, int, float, str, list, tuple)):
        raise TypeError(f"no TOML form for {type(value).__name__}")
    return toml_value(value)


def dumps(values: dict[str, Any], command, where: Path | str = RUN_FILE) -> str:
    """The run file of ``values`` (by parameter name): ``task`` and ``corpus`` first, then
    one section per help panel, in the order of ``charrnn train --help``."""
    by_name = {p.name: p for p in command.params}
    lines = [f"# charrnn {__version__}: the resolved configuration of this run; 'charrnn train --config {where} "
             f"--out NEW_DIR' repeats it."]
    top = [n for n in by_name if n in values and _section(by_name[n]) is None]
    for name in sorted(top, key=lambda n: (n not in TOP, TOP.index(n) if n in TOP else 0)):
        lines.append(f"{_key(by_name[name])} = {_toml(values[name])}")
    sections: dict[str, list[str]] = {}
    for name, param in by_name.items():
        if name in values and _section(param) is not None:
            sections.setdefault(_section(param), []).append(f"{_key(param)} = {_toml(values[name])}")
    for section, body in sections.items():
        lines += ["", f"[{section}]", *body]
    return "\n".join(lines) + "\n"


def not_for(task: str, names) -> set[str]:
    """The options among ``names`` (parameter names of the command) that ``task`` refuses."""
    from ..tasks.registry import get_task
    from .train import NOT_OPTIONS

    spec = get_task(task)
    return {n for n in names if n not in NOT_OPTIONS and not spec.accepts(n)}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def resolved(ctx, checkpoint, task: str) -> dict[str, Any]:
    """Every option of ``task`` with the value the run used (by parameter name): the
    checkpoint's model and training configs for the options named as their fields, this
    command's values (given, from a run file, or defaults) for the rest."""
    configs = (checkpoint.model_config, checkpoint.train_config)
    skip = not_for(task, [p.name for p in ctx.command.params]) | set(NOT_IN_FILE) | NOT_SAVED
    values = {}
    for param in ctx.command.params:
        name = param.name
        if name in skip or name not in ctx.params:
            continue
        value = ctx.params[name]
        for cfg in configs:
            if name not in DERIVED and hasattr(cfg, name):
                value = getattr(cfg, name)
                break
        value = _plain(value)
        if value is not None:
            values[name] = value
    values["task"] = task
    return values


class Keeper:
    """Around a training command: when the command saved a checkpoint in ``out`` (a new
    latest.safetensors), write ``out/config.toml`` (rank 0, atomically), on success and on
    an interruption or failure after the save alike."""

    def __init__(self, ctx, out: Path, resume: bool):
        self.ctx, self.out, self.resume = ctx, Path(out), resume
        self.before = self._stamp()

    def _stamp(self):
        try:
            st = os.stat(self.out / LATEST)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def __enter__(self) -> Keeper:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if "WORLD_SIZE" in os.environ and os.environ.get("RANK", "0") not in ("", "0"):
            return False  # the run directory is rank 0's
        after = self._stamp()
        if after is None or after == self.before:
            return False
        try:
            self.write()
        except (OSError, CharrnnError) as e:
            from .common import warn

            warn(f"could not write {self.out / RUN_FILE}: {getattr(e, 'strerror', None) or e}")
        return False

    def write(self) -> None:
        from ..checkpoint import load_checkpoint

        ck = load_checkpoint(self.out, latest=True)
        command = self.ctx.command
        path = self.out / RUN_FILE
        if self.resume:
            # The run's first command wrote the whole configuration; a resume changes only
            # its limits, intervals, hardware and divergence options.
            if not path.is_file():
                return  # a run from before run files: what it was given is not known
            values = read(path, command)
            new = resolved(self.ctx, ck, ck.task)
            for name in ON_RESUME - {"corpus", "task", "out", "val_file", "text_column", "label_column",
                                     "replace_invalid"} - NOT_SAVED:
                values.pop(name, None)
                if name in new:
                    values[name] = new[name]
        else:
            values = {**resolved(self.ctx, ck, ck.task), "out": str(self.out)}
        text = dumps(values, command, path)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
