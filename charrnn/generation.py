"""Text generation on token ids: sampling (batched), greedy decoding and beam search.

The prime is read by the model's own forward pass in one call. After that, one token per
step is produced by ``StepRunner``, a hand-written inference step for each cell type:
the weights of each layer are fused into one matrix, all buffers are allocated once, and
there is no autograd, so a step costs a few small matrix products and in-place
activations instead of a full ``nn.LSTM`` call. Rows of the batch are independent
samples, or the beams of a beam search (reordered by ``StepRunner.reorder``).

Text: each row turns its ids into text through its own ``Detokenizer``, so byte tokens of
a subword model become characters once complete (and U+FFFD if they come in an order that
is not UTF-8). Stop strings are matched on that text, across token boundaries.
``config.max_tokens`` counts tokens; ``config.max_chars`` cuts the text at a number of
characters.

Seeding rule: sample ``i`` of a batch draws its random numbers from its own generator
seeded with ``seed + i``, so a batch of N gives the same texts as N single runs with
seeds seed, seed + 1, ... (up to floating-point differences of batched arithmetic).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

import torch

from .config import SampleConfig
from .model import RNNLanguageModel, State
from .tokenizers import Detokenizer, TextDetokenizer

TokenText = Callable[[int], str]
MakeDetokenizer = Callable[[], Detokenizer]


def _detokenizers(token_text: TokenText | None, detokenizer: MakeDetokenizer | None) -> MakeDetokenizer:
    """Generation turns ids into text with one Detokenizer per row. ``token_text`` is the
    short form for tokenizers whose every token is whole text (one shared, stateless
    lookup); ``detokenizer`` makes a fresh one per row (``Tokenizer.detokenizer``)."""
    if detokenizer is not None:
        return detokenizer
    if token_text is None:
        raise TypeError("give token_text or detokenizer")
    shared = TextDetokenizer(token_text)
    return lambda: shared


# --------------------------------------------------------------------------- the step


class StepRunner:
    """One-token-at-a-time inference for an RNNLanguageModel, batch of N rows.

    Shapes: tokens (N,), state per layer h (N, H) (and c (N, H) for LSTM), logits (N, V).
    """

    def __init__(self, model: RNNLanguageModel):
        cfg = model.config
        self.cell, self.layers, self.hidden = cfg.cell, cfg.layers, cfg.hidden_size
        p = next(model.parameters())
        self.device, self.dtype = p.device, torch.float32
        with torch.no_grad():
            self.emb = model.embedding.weight.detach().float()
            self.dec_w = model.decoder.weight.detach().float().t().contiguous()  # (H, V)
            self.dec_b = model.decoder.bias.detach().float().view(1, -1)
            self.w: list[torch.Tensor] = []
            self.b: list[torch.Tensor] = []
            self.w_hh: list[torch.Tensor] = []
            self.b_hh: list[torch.Tensor] = []
            for layer in range(cfg.layers):
                w_ih = getattr(model.rnn, f"weight_ih_l{layer}").detach().float()
                w_hh = getattr(model.rnn, f"weight_hh_l{layer}").detach().float()
                b_ih = getattr(model.rnn, f"bias_ih_l{layer}").detach().float()
                b_hh = getattr(model.rnn, f"bias_hh_l{layer}").detach().float()
                if self.cell == "gru":
                    # GRU multiplies the hidden part of the candidate gate by r: keep the
                    # input and hidden products apart.
                    self.w.append(w_ih.t().contiguous())
                    self.b.append(b_ih.view(1, -1))
                    self.w_hh.append(w_hh.t().contiguous())
                    self.b_hh.append(b_hh.view(1, -1))
                else:
                    # [x, h] @ [W_ih | W_hh]^T + (b_ih + b_hh): one product per layer.
                    self.w.append(torch.cat([w_ih, w_hh], dim=1).t().contiguous())
                    self.b.append((b_ih + b_hh).view(1, -1))
        self.n = 0

    def start(self, state: State | None, n: int) -> None:
        """Allocate buffers for ``n`` rows from a model state of batch 1 (or None)."""
        H, L, dev = self.hidden, self.layers, self.device
        self.n = n
        if state is None:
            h = torch.zeros(L, 1, H, device=dev)
            c = torch.zeros(L, 1, H, device=dev)
        elif isinstance(state, tuple):
            h, c = state
        else:
            h, c = state, torch.zeros_like(state)
        # Every layer's h and c in one tensor (2, L, n, H), so that a beam reorder is one
        # index_select and one copy however many layers there are.
        self.hc = torch.empty(2, L, n, H, device=dev)
        self.hc[0].copy_(h.float().expand(L, n, H))
        self.hc[1].copy_(c.float().expand(L, n, H))
        self.h = list(self.hc[0].unbind(0))  # views: (n, H) per layer
        self.c = list(self.hc[1].unbind(0))
        in_sizes = [self.emb.shape[1]] + [H] * (L - 1)
        if self.cell == "gru":
            self.x = [torch.empty(n, s, device=dev) for s in in_sizes]
            self.gi = torch.empty(n, 3 * H, device=dev)
            self.gh = torch.empty(n, 3 * H, device=dev)
        else:
            self.x = [torch.empty(n, s + H, device=dev) for s in in_sizes]  # [input | h]
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[self.cell]
        self.g = torch.empty(n, gates * H, device=dev)
        self.logits = torch.empty(n, self.dec_w.shape[1], device=dev)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search): row i takes the state of row index[i]."""
        self.hc.copy_(self.hc.index_select(2, index))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` (N,); return the logits (N, V) of the next token (a reused buffer)."""
        H = self.hidden
        inp = self.emb.index_select(0, tokens)  # (N, E)
        for i in range(self.layers):
            x, h, c, g = self.x[i], self.h[i], self.c[i], self.g
            e = inp.shape[1]
            if self.cell == "gru":
                x.copy_(inp)
                torch.addmm(self.b[i], x, self.w[i], out=self.gi)
                torch.addmm(self.b_hh[i], h, self.w_hh[i], out=self.gh)
                rz = self.gi[:, : 2 * H].add_(self.gh[:, : 2 * H]).sigmoid_()  # (N, 2H): r, z
                n = self.gi[:, 2 * H :].addcmul_(rz[:, :H], self.gh[:, 2 * H :]).tanh_()
                # h' = (1 - z) * n + z * h = n + z * (h - n)
                h.sub_(n).mul_(rz[:, H:]).add_(n)
            else:
                x[:, :e].copy_(inp)
                x[:, e:].copy_(h)
                torch.addmm(self.b[i], x, self.w[i], out=g)
                if self.cell == "rnn":
                    torch.tanh(g, out=h)
                else:  # LSTM gates in torch's order: input, forget, cell, output
                    g[:, : 2 * H].sigmoid_()
                    g[:, 3 * H :].sigmoid_()
                    g[:, 2 * H : 3 * H].tanh_()
                    c.mul_(g[:, H : 2 * H]).addcmul_(g[:, :H], g[:, 2 * H : 3 * H])
                    torch.tanh(c, out=h)
                    h.mul_(g[:, 3 * H :])
            inp = h
        return torch.addmm(self.dec_b, inp, self.dec_w, out=self.logits)


# --------------------------------------------------------------------------- controls


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> torch.Tensor:
    """Scale by temperature and mask (to -inf) what top-k, top-p and min-p exclude. (N, V).

    top-p keeps the smallest set of most likely tokens whose probability mass reaches p
    (a token is kept when the mass of the tokens ranked above it is still below p).
    min-p keeps the tokens whose probability is at least min_p times the largest one.
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if min_p is not None and min_p > 0:
        # p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p)
        floor = logits.max(dim=-1, keepdim=True).values + math.log(min_p)
        logits = logits.masked_fill(logits < floor, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False  # the most likely token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style repetition penalty: logits of seen tokens are divided by ``penalty`` when
    positive and multiplied by it when negative. seen: (N, V) bool."""
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


class NgramBlocker:
    """Bans, for each row, the tokens that would complete an n-gram the row already has."""

    def __init__(self, n: int, histories: list[list[int]]):
        self.n = n
        self.seen: list[dict[tuple[int, ...], set[int]]] = [{} for _ in histories]
        self.hist = [list(h) for h in histories]
        for row, h in enumerate(self.hist):
            for i in range(len(h) - n + 1):
                self.seen[row].setdefault(tuple(h[i : i + n - 1]), set()).add(h[i + n - 1])

    def push(self, row: int, token: int) -> None:
        h = self.hist[row]
        h.append(token)
        if len(h) >= self.n:
            self.seen[row].setdefault(tuple(h[len(h) - self.n : -1]), set()).add(token)

    def reorder(self, index: list[int]) -> None:
        self.hist = [list(self.hist[i]) for i in index]
        self.seen = [{k: set(v) for k, v in self.seen[i].items()} for i in index]

    def ban(self, logits: torch.Tensor) -> None:
        for row, h in enumerate(self.hist):
            if len(h) >= self.n - 1:
                key = tuple(h[len(h) - self.n + 1 :]) if self.n > 1 else ()
                banned = self.seen[row].get(key)
                if banned:
                    logits[row, list(banned)] = float("-inf")


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


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator seeded with ``seed``, or from the OS when no seed is given."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return gen


def _kept_tokens(tokens: list[int], make: MakeDetokenizer, length: int) -> int:
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


def _text_of(tokens: list[int], make: MakeDetokenizer, cfg: SampleConfig) -> tuple[str, bool]:
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


def _prepare(model: RNNLanguageModel, prime: torch.Tensor, start_id: int) -> tuple[torch.Tensor, State | None, int]:
    """Read the prime (all but its last token) with the model; return it, the state and
    the token the step loop is fed first."""
    device = next(model.parameters()).device
    prime = prime.to(device=device, dtype=torch.long).view(-1)
    if prime.numel() == 0:
        prime = torch.tensor([start_id], device=device)
    state = None
    if prime.numel() > 1:
        _, state = model(prime[:-1].view(1, -1))
    return prime, state, int(prime[-1])


@dataclass
class _Setup:
    """What sampling and beam search both start from, for ``rows`` rows."""

    prime: torch.Tensor
    runner: StepRunner
    first: int  # the token fed at the first step
    tokens: torch.Tensor  # (rows,) the tokens fed at the next step
    ban: torch.Tensor  # ids never produced
    seen: torch.Tensor | None  # (rows, V) tokens in prime or output, for the repetition penalty
    blocker: NgramBlocker | None

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def vocab(self) -> int:
        return self.runner.dec_w.shape[1]


def _setup(model: RNNLanguageModel, prime: torch.Tensor, cfg: SampleConfig, start_id: int, banned: Iterable[int],
           rows: int) -> _Setup:
    prime, state, first = _prepare(model, prime, start_id)
    runner = StepRunner(model)
    runner.start(state, rows)
    dev = runner.device
    seen = None
    if cfg.repetition_penalty != 1.0:
        seen = torch.zeros(rows, runner.dec_w.shape[1], dtype=torch.bool, device=dev)
        seen[:, prime] = True
    blocker = NgramBlocker(cfg.no_repeat_ngram, [prime.tolist()] * rows) if cfg.no_repeat_ngram else None
    return _Setup(prime, runner, first, torch.full((rows,), first, dtype=torch.long, device=dev),
                  torch.tensor(sorted(set(banned)), dtype=torch.long, device=dev), seen, blocker)


# --------------------------------------------------------------------------- sampling


def sample(
    model: RNNLanguageModel,
    prime: torch.Tensor,
    config: SampleConfig,
    *,
    start_id: int,
    token_text: TokenText | None = None,
    detokenizer: MakeDetokenizer | None = None,
    banned: Iterable[int] = (),
    on_text: Callable[[int, str], None] | None = None,
) -> list[Generation]:
    """Sample ``config.num_samples`` continuations of ``prime`` as one batch.

    ``on_text(row, piece)`` is called with each piece of text as soon as it is final
    (stop strings can hold a few characters back, byte tokens wait for the rest of their
    character). Greedy decoding when config.greedy. Ids become text through
    ``detokenizer()`` (one per row), or ``token_text`` when every token is whole text.
    """
    it = iter_sample(model, prime, config, start_id=start_id, token_text=token_text, detokenizer=detokenizer,
                     banned=banned)
    while True:
        try:
            row, piece = next(it)
        except StopIteration as end:
            return end.value
        if on_text is not None:
            on_text(row, piece)


def iter_sample(
    model: RNNLanguageModel,
    prime: torch.Tensor,
    config: SampleConfig,
    *,
    start_id: int,
    token_text: TokenText | None = None,
    detokenizer: MakeDetokenizer | None = None,
    banned: Iterable[int] = (),
) -> Generator[tuple[int, str], None, list[Generation]]:
    """Like ``sample``, as a generator of (row, piece) that returns the generations."""
    make = _detokenizers(token_text, detokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return (yield from _sample(model, prime, config, make, start_id, banned))
    finally:
        model.train(was_training)


def _sample(model, prime, cfg: SampleConfig, make: MakeDetokenizer, start_id, banned):
    t0 = time.perf_counter()
    n = cfg.num_samples
    length = cfg.max_tokens
    st = _setup(model, prime, cfg, start_id, banned, n)
    runner, device, vocab, ban, tokens, seen, blocker = st.runner, st.device, st.vocab, st.ban, st.tokens, st.seen, st.blocker
    gens = [make_generator(None if cfg.seed is None else cfg.seed + i, device) for i in range(n)]
    chunk = max(1, min(length, 1024))
    uniforms = torch.empty(n, 0, device=device)
    out_tokens: list[list[int]] = [[] for _ in range(n)]
    # The log-probability of a row is a running sum; the last few terms are kept apart so
    # that tokens cut off by a stop string can be taken out again. Memory stays constant
    # however long the output.
    logp_sum = [0.0] * n
    # A cut drops the tokens of the held-back text, the stop string and one token past it;
    # a character can take 4 byte tokens.
    recent_size = 8 * max((len(x) for x in cfg.stop), default=0) + 16
    recent: list[deque[float]] = [deque(maxlen=recent_size) for _ in range(n)]
    stops = [StopMatcher(cfg.stop, limit=cfg.max_chars) for _ in range(n)]
    dets = [make() for _ in range(n)]
    feeds = [d.feed for d in dets]
    done = [False] * n
    reasons = ["length"] * n
    rows = torch.arange(n, device=device)
    for step in range(length):
        if cfg.max_time is not None and time.perf_counter() - t0 > cfg.max_time:
            for r in range(n):
                if not done[r]:
                    done[r], reasons[r] = True, "time"
            break
        logits = runner.step(tokens)
        logp_all = logits - torch.logsumexp(logits, dim=-1, keepdim=True)  # the model's own scores
        scores = logits
        if ban.numel():
            scores = scores.index_fill(1, ban, float("-inf"))
        if seen is not None:
            scores = penalize_repeats(scores, seen, cfg.repetition_penalty)
        if blocker is not None:
            scores = scores.clone() if scores is logits else scores
            blocker.ban(scores)
            # A row whose every continuation is banned has nowhere to go: it ends.
            stuck = torch.isneginf(scores).all(dim=-1)
            for r in stuck.nonzero().view(-1).tolist():
                if not done[r]:
                    done[r], reasons[r] = True, "blocked"
            if all(done):
                break
            scores[stuck] = 0.0  # keep finished rows computable
        if cfg.greedy:
            nxt = torch.argmax(scores, dim=-1)
        else:
            probs = torch.softmax(filter_logits(scores, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p), dim=-1)
            if uniforms.shape[1] == 0:
                # Each row's own generator, drawn in chunks: row i's numbers do not depend
                # on how many rows the batch has.
                uniforms = torch.stack([torch.rand(chunk, generator=g, device=device, dtype=torch.float64) for g in gens])
            u = uniforms[:, :1]
            uniforms = uniforms[:, 1:]
            cdf = torch.cumsum(probs, dim=-1, dtype=torch.float64)
            nxt = torch.searchsorted(cdf, u * cdf[:, -1:]).view(-1).clamp_(max=vocab - 1)
            # A draw can land on a zero-probability token only at a float boundary: step
            # back to the nearest allowed one.
            bad = probs.gather(1, nxt.view(-1, 1)).view(-1) <= 0
            if bool(bad.any()):
                nxt = torch.where(bad, torch.argmax(probs, dim=-1), nxt)
        step_logps = logp_all.gather(1, nxt.view(-1, 1)).view(-1).tolist()
        tokens = nxt
        if seen is not None:
            seen[rows, nxt] = True
        ids = nxt.tolist()
        for r, t in enumerate(ids):
            if done[r]:
                continue
            out_tokens[r].append(t)
            logp_sum[r] += step_logps[r]
            recent[r].append(step_logps[r])
            if blocker is not None:
                blocker.push(r, t)
            piece = stops[r].feed(feeds[r](t))
            if piece:
                yield r, piece
            if stops[r].stopped:
                done[r], reasons[r] = True, stops[r].reason
        if all(done):
            break
    results = []
    for r in range(n):
        rest = stops[r].feed(dets[r].flush()) + stops[r].flush()
        if rest:
            yield r, rest
        text = stops[r].text
        kept = _kept_tokens(out_tokens[r], make, len(text))
        dropped = len(out_tokens[r]) - kept
        if dropped > len(recent[r]):  # cannot happen: see recent_size
            raise RuntimeError("stop string cut more tokens than were kept apart")
        logprob = logp_sum[r] - sum(list(recent[r])[len(recent[r]) - dropped :]) if dropped else logp_sum[r]
        results.append(Generation(text, out_tokens[r][:kept], logprob, reasons[r]))
    return results


# --------------------------------------------------------------------------- beam search


@torch.inference_mode()
def beam_search(
    model: RNNLanguageModel,
    prime: torch.Tensor,
    config: SampleConfig,
    *,
    start_id: int,
    token_text: TokenText | None = None,
    detokenizer: MakeDetokenizer | None = None,
    banned: Iterable[int] = (),
) -> list[Generation]:
    """The ``config.num_return`` best continuations of ``prime`` found with ``config.beam``
    beams. All beams advance together as the rows of one step.

    A hypothesis ends at ``config.max_tokens`` tokens, at ``config.max_chars`` characters
    or at a stop string (tokens past the cut are dropped); finished ones are ranked by
    score / length ** length_penalty, where score is the sum of the model's
    log-probabilities (after the repetition penalty, when one is set) and length counts
    tokens. The search ends when ``beam`` hypotheses have finished, or at the length limit.
    """
    make = _detokenizers(token_text, detokenizer)
    was_training = model.training
    model.eval()
    try:
        return _beam(model, prime, config, make, start_id, banned)
    finally:
        model.train(was_training)


def _beam(model, prime, cfg: SampleConfig, make: MakeDetokenizer, start_id, banned) -> list[Generation]:
    t0 = time.perf_counter()
    k = cfg.beam
    length = cfg.max_tokens
    if length == 0 or cfg.max_chars == 0:
        return [Generation("", [], 0.0, "length", 0.0)]
    st = _setup(model, prime, cfg, start_id, banned, k)
    runner, device, vocab, ban, tokens, seen, blocker = st.runner, st.device, st.vocab, st.ban, st.tokens, st.seen, st.blocker
    first = st.first
    # Live hypotheses are rows. Each step appends (parent row, token, log-prob, score) per
    # row to ``history``; a hypothesis's tokens are found by walking parents back.
    history: list[list[tuple[int, int, float, float]]] = []
    alive = torch.full((k,), float("-inf"), dtype=torch.float64, device=device)
    alive[0] = 0.0  # at the start all beams are the same: only one of them expands
    # Per live row, only when text decides the end: its detokenizer and stop matcher.
    tracks: list[tuple[Detokenizer, StopMatcher]] | None = None
    if cfg.stop or cfg.max_chars is not None:
        tracks = [(make(), StopMatcher(cfg.stop, keep=False, limit=cfg.max_chars)) for _ in range(k)]
    finished: list[Generation] = []

    def trace(row: int, tok: int, lp: float, sc: float) -> tuple[list[int], list[float], list[float]]:
        toks, lps, scs = [tok], [lp], [sc]
        for step in range(len(history) - 1, -1, -1):
            row, t, l, c = history[step][row]
            toks.append(t)
            lps.append(l)
            scs.append(c)
        return toks[::-1], lps[::-1], scs[::-1]

    def finish(row: int, tok: int, lp: float, sc: float, reason: str) -> None:
        toks, lps, scs = trace(row, tok, lp, sc)
        text, cut = _text_of(toks, make, cfg)
        kept = _kept_tokens(toks, make, len(text)) if cut else len(toks)
        score = sum(scs[:kept])
        if cfg.length_penalty:
            score /= max(kept, 1) ** cfg.length_penalty
        finished.append(Generation(text, toks[:kept], sum(lps[:kept]), reason, score))

    for step in range(length):
        logits = runner.step(tokens)
        logp = torch.log_softmax(logits.double(), dim=-1)  # (K, V): the model's scores
        adj = logp
        if seen is not None:
            adj = torch.log_softmax(penalize_repeats(logits, seen, cfg.repetition_penalty).double(), dim=-1)
        if ban.numel():
            adj = adj.index_fill(1, ban, float("-inf"))
        if blocker is not None:
            adj = adj.clone()
            blocker.ban(adj)
        cand = (alive.view(-1, 1) + adj).view(-1)  # (K * V) total scores of every extension
        top = torch.topk(cand, min(2 * k, cand.numel()))
        flat = top.indices  # row * V + token
        # One host transfer for the totals, log-probabilities and scores of the candidates
        # (small ops dominate a beam step on the CPU).
        picked = [top.values, logp.view(-1)[flat]] + ([] if adj is logp else [adj.view(-1)[flat]])
        values = torch.stack(picked).tolist()
        totals_t, lp_t = values[0], values[1]
        sc_t = values[-1]
        last = step == length - 1
        timed_out = cfg.max_time is not None and time.perf_counter() - t0 > cfg.max_time
        rows, next_tokens, entries, new_tracks, totals = [], [], [], [], []
        for i, (total, index) in enumerate(zip(totals_t, flat.tolist())):
            if total == float("-inf") or len(rows) == k:
                break
            row, tok = divmod(index, vocab)
            lp, sc = lp_t[i], sc_t[i]
            track = None
            if tracks is not None:
                det, stop = tracks[row][0].clone(), tracks[row][1].clone()
                stop.feed(det.feed(tok))
                if stop.stopped:
                    finish(row, tok, lp, sc, stop.reason or "stop")
                    continue
                track = (det, stop)
            if last or timed_out:
                finish(row, tok, lp, sc, "length" if last else "time")
                continue
            rows.append(row)
            next_tokens.append(tok)
            entries.append((row, tok, lp, sc))
            new_tracks.append(track)
            totals.append(total)
        if len(finished) >= k or not rows or last or timed_out:
            break
        pad = k - len(rows)  # fewer live extensions than beams: fill with dead rows
        history.append(entries + [entries[0]] * pad)
        index = torch.tensor(rows + [rows[0]] * pad, device=device)
        runner.reorder(index)
        if seen is not None:
            seen = seen.index_select(0, index)
            seen[torch.arange(len(next_tokens), device=device), torch.tensor(next_tokens, device=device)] = True
        if blocker is not None:
            blocker.reorder(index.tolist())
            for r, t in enumerate(next_tokens):
                blocker.push(r, t)
        if tracks is not None:
            tracks = new_tracks + [(new_tracks[0][0].clone(), new_tracks[0][1].clone()) for _ in range(pad)]
        alive = torch.tensor(totals + [float("-inf")] * pad, dtype=torch.float64, device=device)
        tokens = torch.tensor(next_tokens + [first] * pad, dtype=torch.long, device=device)
    finished.sort(key=lambda g: g.score, reverse=True)
    return finished[: cfg.num_return]
