"""Models, each built from its config alone (so a checkpoint rebuilds it without options).

``MODEL_KINDS`` maps the model kind stored in a checkpoint to its config class and module
class; a checkpoint written before kinds existed is a language model ("lm").
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import ModelConfig
from ..kinds import EXTRA_MODEL_KINDS, find_extra
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


def _module_class(kind: str) -> type[nn.Module]:
    if kind in MODEL_KINDS:
        return MODEL_KINDS[kind][1]
    import importlib

    module, _, name = EXTRA_MODEL_KINDS[kind][1].partition(":")
    return getattr(importlib.import_module(module), name)


def model_kind(model: nn.Module) -> str:
    """The kind under which ``model`` is stored."""
    for kind in [*MODEL_KINDS, *EXTRA_MODEL_KINDS]:
        if type(model) is _module_class(kind):
            return kind
    raise TypeError(f"{type(model).__name__} is not a registered model kind")


def config_class(kind: str) -> type:
    if kind in MODEL_KINDS:
        return MODEL_KINDS[kind][0]
    extra = find_extra(kind)
    if extra is not None:
        return extra[0]
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r} (made by a newer charrnn, or by a task plugin not installed?)")
    return MODEL_KINDS[kind][0]


def build_model(kind: str, config: Any) -> nn.Module:
    """The model of ``kind`` built from ``config``."""
    config_class(kind)
    return _module_class(kind)(config)
