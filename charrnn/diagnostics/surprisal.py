"""Surprisal: how many bits a language model spends on each token (and character) of a text.

The numbers are the per-token terms of ``tasks.perplexity.evaluate`` with one stream: the
text is read from a zero state with the state carried throughout, the first token is
context only, and a target that is the tokenizer's unknown id is read but not scored. So
``sum(bits) * ln 2`` is ``evaluate(..., streams=1).nll`` and ``bpc`` its bpc.

Tokens to characters. A token "completes" the characters its detokenizer ``feed`` returns:
one for a char tokenizer, several for a subword ("▁the" -> " the"), none for a byte token
that starts a character the next byte token finishes:

    tokens      T   he   ▁c   <E2>  <9C>  <A8>   !
    completes   T   he   " c"  ""    ""    ✨     !
    group       0   1    2     3-5 ------------  6

A group is a run of tokens that complete nothing followed by the token that completes
something. A character's surprisal is its group's bits (the scored tokens among them)
spread evenly over the group's characters: bits per character, so a subword's "the"
shows three characters of a third each. The characters of the first group are context
and those of an unknown token are not scored; both get NaN. The characters with a
number are exactly ``scored_chars``' characters, and their bits sum to the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.cells import detach_state
from ..text.tokenizer import Tokenizer

LN2 = math.log(2)


@dataclass(frozen=True)
class TokenSpans:
    """Where each of T tokens lands in a text of C characters (see the module docstring)."""

    text: str  # the C characters: the input, or what the tokens decode to if that differs
    starts: torch.Tensor  # (T,) long: token t completes text[starts[t]:ends[t]] (empty for a pending byte)
    ends: torch.Tensor  # (T,) long
    group: torch.Tensor  # (T,) long: the index of the token that ends t's group

    def char_token(self) -> torch.Tensor:
        """(C,) long: the token that completes each character."""
        lengths = self.ends - self.starts
        return torch.repeat_interleave(torch.arange(lengths.numel()), lengths)


def token_spans(tokenizer: Tokenizer, text: str, ids: torch.Tensor) -> TokenSpans:
    """Map the tokens ``ids`` of ``text`` to the characters each completes, by feeding them
    one at a time to the tokenizer's detokenizer (held bytes at the end go to the last
    token). A char tokenizer's unknown character decodes to U+FFFD, one character, so the
    input text is kept as it is; if the lengths ever disagree the decoded text is used."""
    det = tokenizer.detokenizer()
    pieces = [det.feed(int(i)) for i in ids.tolist()]
    tail = det.flush()
    if tail and pieces:
        pieces[-1] += tail
    sizes = [len(p) for p in pieces]
    # group[t]: the first token at or after t that completes characters (the last token if none does).
    group = [0] * len(sizes)
    nxt = len(sizes) - 1
    for t in range(len(sizes) - 1, -1, -1):
        if sizes[t]:
            nxt = t
        group[t] = nxt
    lengths = torch.tensor(sizes, dtype=torch.long)
    ends = torch.cumsum(lengths, 0)
    starts = ends - lengths
    shown = text if sum(sizes) == len(text) else "".join(pieces)
    return TokenSpans(shown, starts, ends, torch.tensor(group, dtype=torch.long))


@dataclass(frozen=True)
class Surprisal:
    """Per-token surprisal of a text under a language model, with the map to its characters."""

    ids: torch.Tensor  # (T,) long: the tokens of the text
    bits: torch.Tensor  # (T,) float64: -log2 p(token | everything before it); NaN where not scored
    unknown: torch.Tensor  # (T,) bool: the token is the unknown id (read as input, not scored)
    top_ids: torch.Tensor  # (T, K) long: the K likeliest tokens predicted for position t (row 0: -1)
    top_probs: torch.Tensor  # (T, K) float: their probabilities (row 0: NaN)
    spans: TokenSpans

    @property
    def text(self) -> str:
        return self.spans.text

    @property
    def scored(self) -> torch.Tensor:
        """(T,) bool: the tokens that are scored (not the first, not unknown)."""
        return ~torch.isnan(self.bits)

    @property
    def tokens(self) -> int:
        return int(self.scored.sum())

    @property
    def nll(self) -> float:
        """Total negative log-likelihood in nats (``EvalResult.nll`` with one stream)."""
        return float(torch.nansum(self.bits)) * LN2

    def char_bits(self) -> torch.Tensor:
        """(C,) float64: each character's share of its token group's bits (bits per
        character); NaN for characters not scored (the first token's, unknown ones)."""
        spans = self.spans
        T = self.bits.numel()
        scored = self.scored
        group_bits = torch.zeros(T, dtype=torch.float64).index_add_(0, spans.group, torch.nan_to_num(self.bits))
        group_scored = torch.zeros(T, dtype=torch.long).index_add_(0, spans.group, scored.long())
        lengths = (spans.ends - spans.starts).clamp(min=1)
        per_char = torch.where(group_scored > 0, group_bits / lengths, torch.full_like(group_bits, math.nan))
        return per_char[spans.char_token()]

    @property
    def chars(self) -> int:
        """Characters scored (``scored_chars``): those with a number in ``char_bits``."""
        return int((~torch.isnan(self.char_bits())).sum())

    @property
    def bpc(self) -> float:
        chars = self.chars
        return self.nll / LN2 / chars if chars else float("nan")


@torch.inference_mode()
def token_nll(model: torch.nn.Module, ids: torch.Tensor, unk_id: int | None = None, top_k: int = 3,
              window: int = 1024) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token NLL in nats (T,) float64 of ``ids`` (1-D) under ``model`` (ids (N, T) ->
    logits, state), read as one stream in windows of ``window`` with the state carried,
    as ``evaluate`` does; NaN for token 0 and unknown targets. Also the ``top_k`` likeliest
    tokens at each position and their probabilities, (T, K) each (row 0: -1 and NaN)."""
    device = next(model.parameters()).device
    T = ids.numel()
    nll = torch.full((T,), math.nan, dtype=torch.float64)
    top_ids = torch.full((T, top_k), -1, dtype=torch.long)
    top_probs = torch.full((T, top_k), math.nan)
    if T < 2:
        return nll, top_ids, top_probs
    was_training = model.training
    model.eval()
    try:
        x = ids[:-1].long().view(1, -1).to(device)  # (1, T-1): inputs
        y = ids[1:].long().to(device)  # (T-1,): targets
        state = None
        for t in range(0, x.shape[1], window):
            logits, state = model(x[:, t : t + window], state)
            logits = logits[0].float()  # (W, V)
            nll[1 + t : 1 + t + logits.shape[0]] = F.cross_entropy(logits, y[t : t + window], reduction="none").double().cpu()
            if top_k:
                p, i = logits.softmax(-1).topk(min(top_k, logits.shape[-1]), dim=-1)
                top_probs[1 + t : 1 + t + len(p), : p.shape[1]] = p.cpu()
                top_ids[1 + t : 1 + t + len(i), : i.shape[1]] = i.cpu()
            state = detach_state(state)
    finally:
        model.train(was_training)
    if unk_id is not None:
        nll[1:][ids[1:].cpu() == unk_id] = math.nan
    return nll, top_ids, top_probs


def surprisal(model: torch.nn.Module, tokenizer: Tokenizer, text: str, top_k: int = 3) -> Surprisal:
    """The surprisal of every token of ``text`` under ``model`` (see the module docstring)."""
    ids = tokenizer.encode(text).cpu()
    nll, top_ids, top_probs = token_nll(model, ids, tokenizer.unk_id, top_k)
    unk = tokenizer.unk_id
    unknown = torch.zeros(ids.numel(), dtype=torch.bool) if unk is None else ids == unk
    unknown[:1] = False  # the first token is context, not an unknown target
    return Surprisal(ids, nll / LN2, unknown, top_ids, top_probs, token_spans(tokenizer, text, ids))
