"""Shell completion of file arguments (Typer's own mechanism: ``charrnn --install-completion``).

Commands, options and choices complete from the command definitions alone; these
functions add the files that fit where a path is asked for: run directories and
checkpoint files where a CHECKPOINT is, run files where ``--config`` is. With nothing
that fits, they offer nothing, and bash falls back to its ordinary file completion
(Typer installs the bash function with ``complete -o default``), which walks into
directories.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..files import BEST, LATEST

RUN_FILE = "config.toml"  # the resolved run file a training run keeps (cli/runfile.py)


def _entries(incomplete: str):
    """(text to offer, path) for the entries of the directory ``incomplete`` points into
    whose names start as its last part does; hidden entries only when asked for."""
    head, _, prefix = incomplete.rpartition("/")
    directory = Path(head + "/" if incomplete.startswith("/") and not head else head or ".")
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and (prefix.startswith(".") or not name.startswith(".")):
            yield (f"{head}/{name}" if head or incomplete.startswith("/") else name), directory / name


def _is_run(path: Path) -> bool:
    return path.is_dir() and ((path / BEST).is_file() or (path / LATEST).is_file())


def complete_checkpoint(incomplete: str) -> list[str]:
    """Run directories (holding best.safetensors or latest.safetensors) and .safetensors files."""
    return [text for text, path in _entries(incomplete)
            if _is_run(path) or (path.suffix == ".safetensors" and path.is_file())]


def complete_run_file(incomplete: str) -> list[str]:
    """.toml files, and the run file kept in a run directory (``RUN/config.toml``)."""
    out = []
    for text, path in _entries(incomplete):
        if path.suffix == ".toml" and path.is_file():
            out.append(text)
        elif path.is_dir() and (path / RUN_FILE).is_file():
            out.append(f"{text}/{RUN_FILE}")
    return out
