"""Run files for runs started from Python (``charrnn.train(config=...)``), the same TOML the
command line reads and writes (cli/runfile.py, which also checks each value against the
option's declared type and range; here the configs' own checks do that).

A run file names its options as the command's flags without the dashes, at the top or in
sections; ``task`` and ``corpus`` name the data. A run started from Python keeps its
resolved configuration as ``RUN/config.toml`` too, at the top level, which
``charrnn train --config RUN/config.toml --out NEW`` repeats.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError
from ..files import atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, as a package (pyproject: tomli)
    import tomli as tomllib

RUN_FILE = "config.toml"
NOT_IN_FILE = ("config", "resume", "overwrite", "nproc")  # what to do this time, not what the run is
NOT_SAVED = ("quiet", "json_out", "tensorboard")


def load_toml(path: str | Path) -> dict[str, Any]:
    """The TOML of run file ``path``; a missing, unreadable or invalid file is one ConfigError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such run file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a run file (the one a run keeps is {path / RUN_FILE})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def read(path: str | Path) -> dict[str, Any]:
    """The values of run file ``path`` by option name (sections flattened)."""
    path = Path(path)
    data = load_toml(path)
    values: dict[str, Any] = {}

    def take(key: str, value: Any) -> None:
        name = key.strip().lower().replace("-", "_")
        if name == "json":
            name = "json_out"
        if name in NOT_IN_FILE:
            raise ConfigError(f"{path}: {key}: give it as a keyword (a run file describes a run, not what to do "
                              f"with one)")
        if name in values:
            raise ConfigError(f"{path}: {key} is given twice")
        values[name] = value

    for key, value in data.items():
        if isinstance(value, dict):
            for inner, v in value.items():
                take(inner, v)
        else:
            take(key, value)
    for name in NOT_SAVED:
        values.pop(name, None)
    return values


def toml_value(value: Any) -> str:
    """A TOML value: true/false, integers, floats (the shortest repr that reads back as the
    same float), strings, lists of these."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON's escapes are all TOML basic-string escapes


def resolved(spec, checkpoint, given: dict[str, Any], corpus: list[str], out: Path) -> dict[str, Any]:
    """Every option of the run with the value it used: the checkpoint's configs for the
    fields of its model and training, what was given for the rest."""
    values: dict[str, Any] = {"task": spec.name, "corpus": [str(c) for c in corpus]}
    values.update({k: v for k, v in given.items() if v is not None})
    model = dataclasses.asdict(checkpoint.model_config)
    values.update({k: model[k] for k in spec.model_fields if k in model})
    for k, v in dataclasses.asdict(checkpoint.train_config).items():
        if spec.accepts(k) and v is not None:
            values[k] = v
    values["out"] = str(out)
    return values


def write(out: Path, values: dict[str, Any]) -> None:
    """``out/config.toml`` with ``values`` at the top level, atomically."""
    path = Path(out) / RUN_FILE
    lines = [f"# charrnn {__version__}: the resolved configuration of this run; 'charrnn train --config {path} "
             f"--out NEW_DIR' repeats it."]
    first = [k for k in ("task", "corpus") if k in values]
    for k in first + sorted(k for k in values if k not in first):
        v = values[k]
        lines.append(f"{k.replace('_', '-')} = {toml_value(str(v) if isinstance(v, Path) else v)}")
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
