"""Loss, perplexity and bits per character of a token sequence under a model.

Every prediction position of the text is scored exactly once, with the recurrent state
carried from the start. For speed the text can be scored as B parallel streams; each
stream but the first starts W tokens before the part it scores and reads them only to warm
its state up, so the result is close to the single-stream score (exactly equal with B = 1):

    targets   |------ stream 0 scores S+W ------|---- stream 1: S ----|-- stream 2: S --|
    stream 1 reads                         |W warm|---- scored ----|
    stream 2 reads                                           |W warm|--- scored ---|

Targets that are the tokenizer's unknown id are not scored (a model cannot predict a
character it never saw); they are counted and reported as ``unknown``.

Perplexity is per scored token; bits per character divide the same total NLL by the
characters of the input the scored tokens cover (``scored_chars``), so a char model and a
subword model scored on the same text are compared on the same characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.cells import State, detach_state
from ..models.lm import RNNLanguageModel
from ..runtime import autocast
from ..text.tokenizer import Tokenizer

IGNORE = -100


@dataclass(frozen=True)
class EvalResult:
    nll: float  # total negative log-likelihood in nats over the scored tokens
    tokens: int  # scored tokens
    chars: int  # characters of the input those tokens cover (see scored_chars)
    unknown: int  # targets not scored because they are the unknown id

    @property
    def loss(self) -> float:
        """Mean NLL in nats per scored token."""
        return self.nll / self.tokens if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.tokens else float("nan")

    @property
    def bpc(self) -> float:
        """Bits per character: total NLL / ln 2 / characters."""
        return self.nll / math.log(2) / self.chars if self.chars else float("nan")

    def as_dict(self) -> dict:
        return {
            "perplexity": self.perplexity,
            "bpc": self.bpc,
            "loss": self.loss,
            "tokens": self.tokens,
            "chars": self.chars,
            "unknown": self.unknown,
        }


def scored_chars(tokenizer: Tokenizer, text: str, ids: torch.Tensor) -> int:
    """The characters of ``text`` covered by the tokens ``evaluate`` scores: every
    character that ends after the first token (the first token is only context), less the
    unknown characters of a char tokenizer (read, not scored). For a char tokenizer that
    is one character per scored token; a subword first token that holds "The" leaves
    len(text) - 3, and one that is the first byte of an emoji leaves len(text)."""
    return scored_char_count(tokenizer, len(text), ids)


def scored_char_count(tokenizer: Tokenizer, n_chars: int, ids: torch.Tensor) -> int:
    """``scored_chars`` for a text of ``n_chars`` characters that encodes to ``ids``
    (the text itself is not needed: a streamed corpus never holds it whole)."""
    if ids.numel() < 2:
        return 0
    first = len(tokenizer.detokenizer().feed(int(ids[0])))  # whole characters in it
    unknown = 0 if tokenizer.unk_id is None else int((ids[1:] == tokenizer.unk_id).sum())
    return n_chars - first - unknown


def _layout(ids: torch.Tensor, streams: int, warmup: int, unk_id: int | None):
    """(inputs, targets) of shape (B, S + W) per the diagram above; targets use IGNORE."""
    inputs, targets = ids[:-1].long(), ids[1:].long().clone()
    if unk_id is not None:
        targets[targets == unk_id] = IGNORE
    m = inputs.numel()
    if streams <= 1 or m < 2 * streams * max(warmup, 1):
        return inputs.view(1, -1), targets.view(1, -1)
    per = math.ceil((m - warmup) / streams)  # S
    length = per + warmup  # S + W
    total = streams * per + warmup
    pad = total - m
    inputs = torch.cat([inputs, inputs.new_zeros(pad)])
    targets = torch.cat([targets, targets.new_full((pad,), IGNORE)])
    x = torch.stack([inputs[i * per : i * per + length] for i in range(streams)])
    y = torch.stack([targets[i * per : i * per + length] for i in range(streams)])
    y[1:, :warmup] = IGNORE  # warm-up positions are scored by the previous stream
    return x, y


@torch.inference_mode()
def evaluate(
    model: RNNLanguageModel,
    ids: torch.Tensor,
    *,
    unk_id: int | None = None,
    chars: int | None = None,
    streams: int = 1,
    warmup: int = 256,
    window: int = 1024,
    dtype: torch.dtype | None = None,
) -> EvalResult:
    """Score ``ids`` (1-D). ``chars`` is what bpc divides by: give ``scored_chars(...)``;
    it defaults to the number of scored tokens (right for a char tokenizer only)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        if ids.numel() < 2:
            return EvalResult(0.0, 0, 0, 0)
        x, y = _layout(ids, streams, warmup, unk_id)
        unknown = int((ids[1:] == unk_id).sum()) if unk_id is not None else 0
        x, y = x.to(device), y.to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        state: State | None = None
        for t in range(0, x.shape[1], window):
            xs, ys = x[:, t : t + window], y[:, t : t + window]
            with autocast(device, dtype):
                logits, state = model(xs, state)
            total += F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), ys.reshape(-1),
                ignore_index=IGNORE, reduction="sum",
            ).double()
            state = detach_state(state)
        tokens = int((y != IGNORE).sum())
        return EvalResult(float(total), tokens, tokens if chars is None else chars, unknown)
    finally:
        model.train(was_training)
