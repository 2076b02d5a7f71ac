"""charrnn: train recurrent networks on your own sequences: language models, classifiers,
encoder-decoders, taggers, label-conditioned generators.

``charrnn.train(data, task=..., **options)`` runs what ``charrnn train`` runs and returns the
trained model; ``charrnn.load(path)`` returns a ``LanguageModel``, a ``Classifier``, a
``Seq2SeqModel``, a ``SequenceTagger``, a ``ConditionalModel`` or a registered task's own
class (see ``charrnn.api``). ``charrnn.register_task`` adds a task (tasks/registry.py),
``charrnn.register_cell`` a recurrent cell (models/cells.py).
Submodules are imported on first use so that ``charrnn --help`` does not wait for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def train(data=None, task: str | None = None, *, progress: bool = True, **options: Any):
    """Train a model as ``charrnn train`` does and return it (``charrnn.api.training.train``
    says what the options are). ``progress`` draws the progress bar and the log lines on
    stderr, in a terminal or in a Jupyter notebook; False trains silently."""
    from .api.training import train as run

    if not progress:
        return run(data, task, **options)
    from rich.console import Console

    from .display.progress import TrainingDisplay

    display = TrainingDisplay(Console(stderr=True, soft_wrap=True))
    with display:
        return run(data, task, on_event=display.handle, on_note=display.note, on_prepare=display.prepare, **options)


def __getattr__(name: str) -> Any:
    if name in ("load", "load_ensemble", "LanguageModel", "Classifier", "Seq2SeqModel", "SequenceTagger", "ConditionalModel",
                "Model"):
        from . import api

        return getattr(api, name)
    if name in ("register_task", "TaskSpec", "Option"):
        from .tasks import registry

        return getattr(registry, name)
    if name in ("register_cell", "CellKind"):
        from .models import cells

        return getattr(cells, name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
