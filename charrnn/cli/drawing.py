"""Drawing for the commands that make pictures (plot, diagnose): matplotlib, imported
only when a picture is asked for, with one clear line when it is not installed.

The core computes numbers and arrays; only the command layer draws them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..errors import CharrnnError
from ..files import atomic_write

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def check_image_path(path: Path) -> Path:
    """``path`` if its extension names a format we write (checked before any work)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise CharrnnError(f"{path}: the picture's format comes from its extension: use one of "
                           f"{', '.join(IMAGE_SUFFIXES)}")
    if path.exists() and path.is_dir():
        raise CharrnnError(f"{path}: is a directory; give a file name ending in .png or .svg")
    if not path.parent.exists():
        raise CharrnnError(f"{path.parent}: no such directory")
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on a file-only backend, or one line that says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise CharrnnError("pictures need matplotlib: pip install 'charrnn[plot]'") from None
    matplotlib.use("Agg", force=True)  # no display needed, and never opens a window
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` in the format its extension names, atomically (a picture
    is never left half written), and release it."""
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lower().lstrip("."), dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = buf.getvalue()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_file(path: Path, text: str) -> None:
    """Write an HTML (or other text) page atomically, as UTF-8."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
