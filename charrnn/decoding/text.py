"""From generated ids to text: detokenizers per row, stop strings, and the result type.

Each row turns its ids into text through its own ``Detokenizer``, so byte tokens of a
subword model become characters once complete (and U+FFFD if they come in an order that
is not UTF-8). Stop strings are matched on that text, across token boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..config import SampleConfig
from ..text.tokenizer import Detokenizer, TextDetokenizer

TokenText = Callable[[int], str]
MakeDetokenizer = Callable[[], Detokenizer]


def detokenizers(token_text: TokenText | None, detokenizer: MakeDetokenizer | None) -> MakeDetokenizer:
    """Generation turns ids into text with one Detokenizer per row. ``token_text`` is the
    short form for tokenizers whose every token is whole text (one shared, stateless
    lookup); ``detokenizer`` makes a fresh one per row (``Tokenizer.detokenizer``)."""
    if detokenizer is not None:
        return detokenizer
    if token_text is None:
        raise TypeError("give token_text or detokenizer")
    shared = TextDetokenizer(token_text)
    return lambda: shared


class StopMatcher:
    """Cuts a growing text at the first occurrence of any stop string, and at ``limit``
    characters.

    ``feed`` returns the part of the text that can be shown now: a tail that could still
    be the start of a stop string is held back until it cannot. A match cannot start in
    text already shown (that text's tail was not the start of any stop string), so only
    the held-back tail and the new piece are searched: the work per piece is constant.
    ``reason`` says why it stopped: "stop" (a stop string) or "length" (the limit).
    """

    def __init__(self, stops: Iterable[str], keep: bool = True, limit: int | None = None):
        self.stops = tuple(stops)
        self.keep = keep  # False: only detect the stop (the caller rebuilds the text)
        self.limit = limit
        self.parts: list[str] = []  # text shown so far, in pieces (joined now and then)
        self.shown = 0  # characters shown so far
        self.pending = ""  # held back: might be the start of a stop string
        self.stopped = False
        self.reason: str | None = None

    def clone(self) -> StopMatcher:
        other = StopMatcher(self.stops, self.keep, self.limit)
        self._compact()
        other.parts, other.pending, other.stopped = list(self.parts), self.pending, self.stopped
        other.shown, other.reason = self.shown, self.reason
        return other

    def _compact(self) -> None:
        if len(self.parts) > 64:
            self.parts = ["".join(self.parts)]

    def _show(self, text: str) -> str:
        if self.limit is not None and self.shown + len(text) >= self.limit:
            # The text reaches the limit: what is held back lies beyond it and never shows.
            text = text[: self.limit - self.shown]
            self.pending = ""
            if not self.stopped:
                self.stopped, self.reason = True, "length"
        if text:
            self.shown += len(text)
            if self.keep:
                self.parts.append(text)
                self._compact()
        return text

    @property
    def text(self) -> str:
        """All the text so far (shown and held back), cut at a stop string if one matched."""
        return "".join(self.parts) + self.pending

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        buf = self.pending + piece
        if not self.stops:
            self.pending = ""
            return self._show(buf)
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self.reason = True, "stop"
            self.pending = ""
            return self._show(buf[:cut])
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:k]):
                    hold = k
                    break
        self.pending = buf[len(buf) - hold :] if hold else ""
        return self._show(buf[: len(buf) - hold])

    def flush(self) -> str:
        """At the end, what was held back is output after all."""
        out, self.pending = self.pending, ""
        return self._show(out)


@dataclass
class Generation:
    """One generated text with the model's log-probability of it (given the prime)."""

    text: str
    tokens: list[int]
    logprob: float  # sum of log p(token | context) under the model, natural log
    finish_reason: str  # "length", "stop", "time", or "blocked" (no-repeat-ngram left no token)
    score: float | None = None  # beam search: the length-normalised ranking score

    def as_dict(self) -> dict:
        d = {"text": self.text, "logprob": self.logprob, "tokens": len(self.tokens), "finish_reason": self.finish_reason}
        if self.score is not None:
            d["score"] = self.score
        return d


def kept_tokens(tokens: list[int], make: MakeDetokenizer, length: int) -> int:
    """How many leading tokens lie entirely within the first ``length`` characters of their
    text: a token counts once the text it ends is within them and it leaves no bytes of an
    unfinished character behind."""
    det = make()
    used = kept = 0
    for k, t in enumerate(tokens):
        used += len(det.feed(t))
        if used > length:
            return kept
        if not det.pending:
            kept = k + 1
    if used + len(det.flush()) <= length:
        kept = len(tokens)
    return kept


def text_of(tokens: list[int], make: MakeDetokenizer, cfg: SampleConfig) -> tuple[str, bool]:
    """The text of ``tokens`` cut at the first stop string and at max_chars; and whether
    it was cut."""
    det, stop = make(), StopMatcher(cfg.stop, limit=cfg.max_chars)
    for t in tokens:
        stop.feed(det.feed(t))
        if stop.stopped:
            return stop.text, True
    stop.feed(det.flush())
    stop.flush()
    return stop.text, stop.stopped
