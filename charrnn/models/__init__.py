"""Models, each built from its config alone (so a checkpoint rebuilds it without options).

``MODEL_KINDS`` maps the model kind stored in a checkpoint to its config class and module
class; a checkpoint written before kinds existed is a language model ("lm").
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import ModelConfig
from ..task_configs import ClassifierConfig, ConditionalConfig, Seq2SeqConfig, TaggerConfig
from .classifier import SequenceClassifier
from .conditional import ConditionalGenerator
from .lm import RNNLanguageModel
from .seq2seq import Seq2Seq
from .tagger import Tagger

MODEL_KINDS: dict[str, tuple[type, type[nn.Module]]] = {
    "lm": (ModelConfig, RNNLanguageModel),
    "classifier": (ClassifierConfig, SequenceClassifier),
    "seq2seq": (Seq2SeqConfig, Seq2Seq),
    "conditional": (ConditionalConfig, ConditionalGenerator),
    "tagger": (TaggerConfig, Tagger),
}


def model_kind(model: nn.Module) -> str:
    """The kind under which ``model`` is stored."""
    for kind, (_, cls) in MODEL_KINDS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"{type(model).__name__} is not a registered model kind")


def config_class(kind: str) -> type:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r} (made by a newer charrnn?)")
    return MODEL_KINDS[kind][0]


def build_model(kind: str, config: Any) -> nn.Module:
    """The model of ``kind`` built from ``config``."""
    config_class(kind)
    return MODEL_KINDS[kind][1](config)
