"""The Python API: load a trained model and use it in a few lines.

    import charrnn
    model = charrnn.load("checkpoints/tinyshakespeare")      # a language model
    print(model.generate("ROMEO:", length=200, temperature=0.8, seed=1))
    print(model.evaluate("To be, or not to be").bpc)

    clf = charrnn.load("checkpoints/sst2")                    # a classifier
    print(clf.predict(["a gorgeous film", "a dull mess"], top_k=2))

    g2p = charrnn.load("checkpoints/g2p")                     # an encoder-decoder
    print(g2p.predict(["абажура"], beam=5, n_best=2))          # [[("a b ə ʒ u ɾ ə", -0.01), ...]]

    pos = charrnn.load("checkpoints/pos")                     # a tagger
    print(pos.predict([["She", "reads", "books"]]))           # [[("PRON", 1.0), ("VERB", 0.97), ...]]

    names = charrnn.load("checkpoints/surnames")              # a label-conditioned generator
    print([g.text for g in names.sample("Russian", n=5, temperature=0.8)])

The command line uses exactly these calls.
"""

from __future__ import annotations

import os

from ..checkpoint import load_checkpoint
from ..tasks.registry import get_task
from .base import Model
from .classify import Classifier
from .conditional import ConditionalModel
from .lm import LanguageModel
from .seq2seq import Seq2SeqModel, load_ensemble
from .tag import SequenceTagger

__all__ = ["Classifier", "ConditionalModel", "LanguageModel", "Model", "Seq2SeqModel", "SequenceTagger", "load",
           "load_ensemble"]


def load(path: str | os.PathLike, device: str = "auto", latest: bool = False) -> Model:
    """Load a run directory (its best checkpoint, or latest) or a checkpoint file as the API
    class its task declares: a ``LanguageModel``, ``Classifier``, ``Seq2SeqModel``,
    ``SequenceTagger``, ``ConditionalModel``, or a registered task's own."""
    ck = load_checkpoint(path, latest=latest)
    return get_task(ck.task).load("api")(ck, device=device)
