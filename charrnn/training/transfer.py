"""Starting a task's model from a trained language model (``--init RUN``): the transfer
step of ULMFiT (Howard and Ruder 2018), where a model pretrained to predict the next token
of text becomes the first layers of a classifier or a generator.

The task says which of the language model's tensors become which of its own
(``TaskSpec.init_names``: a map of names); each is copied where the shapes agree, or in
its leading block where the task's tensor is larger (a conditioned generator's embedding
has rows for padding, SOS and EOS after the language model's tokens; its first layer
reads the label embedding after the token's, so its input matrix has more columns; a
bidirectional classifier's second layer reads both directions). The rest keeps its
initialisation. The task takes the language model's tokenizer, so token ids agree. A
tensor may go to several places (an encoder-decoder with one vocabulary on both sides
takes the language model's embedding into its source and its target embeddings).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from ..checkpoint import Checkpoint
from ..errors import ConfigError

# A language model's tensor name -> the task's tensor name(s) it becomes, or None.
Names = Callable[[str], str | tuple[str, ...] | None]


def targets(names: Names, name: str) -> tuple[str, ...]:
    """The task's tensors that the language model's ``name`` goes to (none, one or several)."""
    to = names(name)
    return () if to is None else (to,) if isinstance(to, str) else tuple(to)


def depths(model: nn.Module, source: Checkpoint, names: Names) -> dict[str, int]:
    """Each parameter's depth for discriminative learning rates and gradual unfreezing: the
    embedding 0, the language model's recurrent layer k k + 1, everything the language model
    did not give (the task's own head, a backward direction) the top, layers + 1."""
    top = source.model_config.layers + 1
    out = {name: top for name, _ in model.named_parameters()}
    for name in source.weights:
        match = re.search(r"_l(\d+)$", name)
        for to in targets(names, name):
            if to in out:
                out[to] = 0 if name.startswith("embedding") else (int(match.group(1)) + 1 if match else top)
    return out


def scales(depth: int, top: int, step: int, layer_lr_decay: float, unfreeze: int) -> float:
    """The factor of the learning rate of a layer at ``depth`` at ``step``: lr / decay **
    (top - depth), or 0 while gradual unfreezing has not reached it (the top trains from
    step 0, the next layer down from step ``unfreeze``, and so on)."""
    if unfreeze and step < (top - depth) * unfreeze:
        return 0.0
    return layer_lr_decay ** -(top - depth)


def copy_from(model: nn.Module, source: Checkpoint, names: Names) -> dict[str, str]:
    """Copy ``source``'s weights into ``model`` by ``names``; returns {target name: "whole"
    or "part"} for each tensor copied. A tensor that does not fit is a ConfigError."""
    target = dict(model.named_parameters(remove_duplicate=False))  # a tied tensor under both names
    copied: dict[str, str] = {}
    with torch.no_grad():
        for name, value in source.weights.items():
            for to in targets(names, name):
                if to not in target:
                    raise ConfigError(f"--init {source.path}: the model has no {to} for its {name}")
                dst = target[to]
                if value.dim() != dst.dim() or any(a > b for a, b in zip(value.shape, dst.shape)):
                    raise ConfigError(f"--init {source.path}: its {name} {tuple(value.shape)} does not fit the "
                                      f"model's {to} {tuple(dst.shape)}")
                dst[tuple(slice(0, n) for n in value.shape)] = value.to(dst.dtype)
                copied[to] = "whole" if value.shape == dst.shape else "part"
    return copied
