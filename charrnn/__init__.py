"""charrnn: train recurrent networks on your own sequences: language models, classifiers,
encoder-decoders, taggers.

``charrnn.load(path)`` returns a ``LanguageModel``, a ``Classifier``, a ``Seq2SeqModel``, a
``SequenceTagger`` or a ``ConditionalModel`` (see ``charrnn.api``). Submodules are
imported on first use so that ``charrnn --help`` does not wait for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("load", "load_ensemble", "LanguageModel", "Classifier", "Seq2SeqModel", "SequenceTagger", "ConditionalModel"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
