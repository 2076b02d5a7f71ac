"""Sampling (batched), and greedy decoding as its temperature-0 limit, over any DecoderStep.

Rows of the batch are independent samples. ``config.max_tokens`` counts tokens;
``config.max_chars`` cuts the text at a number of characters; stop strings end a row.

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

import numpy as np
import torch

from ..config import SampleConfig
from ..models.lm import RNNLanguageModel
from .controls import Controls
from .engines import make_step
from .protocol import DecoderStep, read_prime
from .text import Generation, MakeDetokenizer, StopMatcher, TokenText, detokenizers, kept_tokens


class Uniforms:
    """Each row's uniform random numbers (float64), drawn from its own generator (seed +
    row) in chunks: row i's numbers do not depend on how many rows the batch has."""

    def __init__(self, seed: int | None, n: int, chunk: int, device: torch.device):
        self.gens = [make_generator(None if seed is None else seed + i, device) for i in range(n)]
        self.chunk, self.device = chunk, device
        self.block = torch.empty(n, 0, device=device)
        self.k = 0

    def _advance(self) -> int:
        """The column of the next numbers (a new block drawn when this one is used up)."""
        if self.k == self.block.shape[1]:
            self.block = torch.stack([torch.rand(self.chunk, generator=g, device=self.device, dtype=torch.float64)
                                      for g in self.gens])
            self.block_np = self.block.numpy() if self.device.type == "cpu" else None
            self.k = 0
        self.k += 1
        return self.k - 1

    def next(self) -> torch.Tensor:
        """The next number of every row, (N, 1)."""
        k = self._advance()
        return self.block[:, k : k + 1]

    def next_np(self) -> np.ndarray:
        """``next`` as a numpy vector (N,), on a CPU."""
        k = self._advance()
        return self.block_np[:, k]


def _draw(scores: torch.Tensor, logp_all: torch.Tensor, controls: Controls, greedy: bool, unis: Uniforms,
          vocab: int) -> tuple[list[int], list[float], torch.Tensor]:
    """The next token of every row from ``scores`` (any device): its id, its
    log-probability under the model, and the ids as a tensor. The draw inverts the CDF of
    the sampling distribution at the row's next uniform number."""
    probs = None
    if greedy:
        nxt = torch.argmax(scores, dim=-1)
    else:
        probs = torch.softmax(controls.sampling(scores), dim=-1)
        cdf = torch.cumsum(probs, dim=-1, dtype=torch.float64)
        nxt = torch.searchsorted(cdf, unis.next() * cdf[:, -1:]).view(-1).clamp_(max=vocab - 1)
    # One host transfer per step: the tokens, their log-probabilities and (sampling)
    # their probabilities (small ops and transfers are most of a step's cost at batch 1).
    picked = [nxt.double(), logp_all.gather(1, nxt.view(-1, 1)).view(-1).double()]
    if probs is not None:
        picked.append(probs.gather(1, nxt.view(-1, 1)).view(-1).double())
    host = torch.stack(picked).tolist()
    if probs is not None and min(host[2]) <= 0:
        # A draw can land on a zero-probability token only at a float boundary: step
        # back to the nearest allowed one.
        bad = torch.tensor([p <= 0 for p in host[2]], device=probs.device)
        nxt = torch.where(bad, torch.argmax(probs, dim=-1), nxt)
        host = [nxt.tolist(), logp_all.gather(1, nxt.view(-1, 1)).view(-1).tolist()]
    return [int(t) for t in host[0]], host[1], nxt


def plain_controls(cfg: SampleConfig, controls: Controls, vocab: int) -> bool:
    """Whether the controls of a run do no more than ban ids and scale by temperature (the
    defaults): then ``draw_plain`` chooses."""
    return (controls.stateless and (cfg.top_k is None or cfg.top_k >= vocab) and (cfg.top_p is None or cfg.top_p >= 1)
            and not cfg.min_p)


def draw_plain(logits: torch.Tensor, ban: np.ndarray, allowed: np.ndarray | None, cfg: SampleConfig,
               u: np.ndarray | None, vocab: int) -> tuple[list[int], list[float]]:
    """``_draw`` for float32 logits on a CPU under ``plain_controls``, in numpy and float64:
    the same rule (the CDF of the sampling distribution inverted at the row's uniform
    number; greedy: the first best allowed token) in a few calls instead of a dozen torch
    calls, which at one row would cost half as much again as the step's own products. The
    probabilities are computed in float64 instead of float32, so a draw can differ from
    ``_draw``'s only where the uniform number falls within float32 rounding of a boundary.
    ``ban``: 0 for allowed ids, -inf for banned ones (V,); ``allowed``: 1.0 and 0.0 (None
    when nothing is banned); ``u``: each row's uniform number (N,), None for greedy."""
    z = logits.numpy().astype(np.float64)  # (N, V)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    lse = np.log(e.sum(axis=1)) + m[:, 0]  # the model's log-normaliser (no bans)
    if u is None:  # greedy
        ids = (z + ban).argmax(axis=1).tolist()
    else:
        weights = e * allowed if allowed is not None else e
        cdf = weights.cumsum(axis=1) if cfg.temperature == 1.0 else None
        if cdf is None or not cdf[:, -1].all():  # (or every allowed weight underflowed)
            scaled = z + ban
            weights = np.exp((scaled - scaled.max(axis=1, keepdims=True)) / cfg.temperature)
            cdf = weights.cumsum(axis=1)
        target = u * cdf[:, -1]
        ids = [min(int(c.searchsorted(t)), vocab - 1) for c, t in zip(cdf, target)]
        for r, i in enumerate(ids):
            if weights[r, i] <= 0:  # only at a float boundary: the likeliest allowed token
                ids[r] = int(weights[r].argmax())
    return ids, [float(z[r, i] - lse[r]) for r, i in enumerate(ids)]


def draw_one(z: np.ndarray, ban: np.ndarray, allowed: np.ndarray | None, inv_t: float, u: float | None,
             vocab: int) -> tuple[int, float] | None:
    """``draw_plain`` for one row, in as few numpy calls as the arithmetic allows (at one
    row each call is a visible part of a token's cost): z, the row's float32 logits (V,);
    ``u`` the row's uniform number, None for greedy. None where a float boundary needs
    ``draw_plain``'s care (every allowed weight underflowed, or a zero-weight draw)."""
    d = np.subtract(z, z.max(), dtype=np.float64)
    e = np.exp(d)
    log_total = math.log(float(e.sum()))  # the model's log-normaliser (no bans), less the max
    if u is None:
        i = int((d + ban).argmax())
    else:
        w = e if inv_t == 1.0 else np.exp(d * inv_t)
        if allowed is not None:
            w *= allowed  # (in place even when w is e: e has done its work)
        cdf = w.cumsum()
        top = float(cdf[-1])
        if not top > 0:
            return None
        i = min(int(cdf.searchsorted(u * top)), vocab - 1)
        if not w[i] > 0:
            return None
    return i, float(d[i]) - log_total


def _one_row(runner: DecoderStep, tokens: torch.Tensor, length: int, cfg: SampleConfig, t0: float, ban: np.ndarray,
             allowed: np.ndarray | None, unis: Uniforms, vocab: int, feed, stop: StopMatcher, out: list[int],
             recent: deque, logp_sum: list[float], reasons: list[str]) -> Generator[tuple[int, str], None, None]:
    """``sample_steps``'s loop for one row under plain controls (a language model sampled
    once: the commonest use): the same choices, log-probabilities and text, with the
    fewest calls per token. Each call costs more here than its size suggests: the step
    streams megabytes of weights through the caches, and the interpreter's own data with
    them (a draw that takes 11 us alone took 3-4 times that between two steps)."""
    tokens_np = tokens.numpy()
    inv_t, greedy = 1.0 / cfg.temperature, cfg.greedy
    last, z = None, None
    total = 0.0
    for _ in range(length):
        if cfg.max_time is not None and time.perf_counter() - t0 > cfg.max_time:
            reasons[0] = "time"
            break
        logits = runner.step(tokens)
        if logits is not last:  # a step that reuses its buffer reuses this view too
            last, z = logits, logits.float().numpy()
        u = None if greedy else unis.next_np()
        one = draw_one(z[0], ban, allowed, inv_t, None if greedy else u[0], vocab)
        if one is None:  # a float boundary: the general rule
            ids, lps = draw_plain(logits.float(), ban, allowed, cfg, u, vocab)
            one = ids[0], lps[0]
        t, lp = one
        tokens_np[0] = t
        out.append(t)
        total += lp
        recent.append(lp)
        piece = stop.feed(feed(t))
        if piece:
            yield 0, piece
        if stop.stopped:
            reasons[0] = stop.reason
            break
    logp_sum[0] = total


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator seeded with ``seed``, or from the OS when no seed is given."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return gen


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
    make = detokenizers(token_text, detokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return (yield from _sample(model, prime, config, make, start_id, banned))
    finally:
        model.train(was_training)


def lm_start(model: RNNLanguageModel, prime: torch.Tensor, start_id: int, rows: int,
             engine: str = "auto") -> tuple[DecoderStep, list[int], int]:
    """The language model's step for ``rows`` rows after reading ``prime``: (step, the
    prime's ids, the first token to feed). The step is ``engine``'s (decoding/engines.py)."""
    prime, state, first = read_prime(model, prime, start_id)
    runner = make_step(model, rows, engine, pack=True)  # the same rows for the whole run
    runner.start(state, rows)
    return runner, prime.tolist(), first


def _sample(model, prime, cfg: SampleConfig, make: MakeDetokenizer, start_id, banned):
    runner, history, first = lm_start(model, prime, start_id, cfg.num_samples, cfg.engine)
    return (yield from sample_steps(runner, history, first, cfg, make, banned))


def sample_steps(runner: DecoderStep, history: list[int], first: int, cfg: SampleConfig, make: MakeDetokenizer,
                 banned: Iterable[int], end_id: int | None = None, limits: list[int] | None = None,
                 rows: int | None = None) -> Generator[tuple[int, str], None, list[Generation]]:
    """Sample from a started step (``rows`` rows, ``cfg.num_samples`` by default, fed
    ``first`` next, after ``history`` for the controls): a generator of (row, piece)
    returning the generations.

    A sequence-to-sequence decoder also gives ``end_id`` (EOS: a row that produces it
    ends, with finish reason "end"; the token counts in the log-probability, not in the
    text) and ``limits``, the most tokens of each row (instead of ``cfg.max_tokens``)."""
    t0 = time.perf_counter()
    n = rows if rows is not None else cfg.num_samples
    length = max(limits) if limits is not None else cfg.max_tokens
    device, vocab = runner.device, runner.vocab_size
    controls = Controls(cfg, history, banned, n, vocab, device)
    blocker = controls.blocker
    tokens = torch.full((n,), first, dtype=torch.long, device=device)
    plain = device.type == "cpu" and plain_controls(cfg, controls, vocab)
    ban = np.zeros(vocab)
    ban[controls.ban.cpu().numpy()] = -np.inf
    allowed = (ban == 0).astype(np.float64) if controls.ban.numel() else None
    # The plain draw writes the next tokens into one tensor of its own, fed to every step
    # (a step reads its tokens before it returns, and keeps no reference to them).
    own_tokens = torch.full((n,), first, dtype=torch.long)
    tokens_np = own_tokens.numpy()
    unis = Uniforms(cfg.seed, n, max(1, min(length, 1024)), device)
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
    if plain and n == 1 and end_id is None and limits is None:
        yield from _one_row(runner, own_tokens, length, cfg, t0, ban, allowed, unis, vocab, feeds[0], stops[0],
                            out_tokens[0], recent[0], logp_sum, reasons)
        length = 0  # done: straight to the results
    for step in range(length):
        if cfg.max_time is not None and time.perf_counter() - t0 > cfg.max_time:
            for r in range(n):
                if not done[r]:
                    done[r], reasons[r] = True, "time"
            break
        logits = runner.step(tokens)
        if plain and logits.dtype == torch.float32:
            u = None if cfg.greedy else unis.next_np()
            ids, step_logps = draw_plain(logits, ban, allowed, cfg, u, vocab)
            tokens_np[:] = ids
            nxt = own_tokens
        else:
            logp_all = torch.log_softmax(logits, dim=-1)  # the model's own scores
            scores = controls.scores(logits)
            if blocker is not None:
                # A row whose every continuation is banned has nowhere to go: it ends.
                stuck = torch.isneginf(scores).all(dim=-1)
                for r in stuck.nonzero().view(-1).tolist():
                    if not done[r]:
                        done[r], reasons[r] = True, "blocked"
                if all(done):
                    break
                scores[stuck] = 0.0  # keep finished rows computable
            ids, step_logps, nxt = _draw(scores, logp_all, controls, cfg.greedy, unis, vocab)
        tokens = nxt
        if not controls.stateless:
            controls.push(nxt, ids, [not d for d in done])
        for r, t in enumerate(ids):
            if done[r]:
                continue
            if t == end_id:
                done[r], reasons[r] = True, "end"
                logp_sum[r] += step_logps[r]
                continue
            out_tokens[r].append(t)
            logp_sum[r] += step_logps[r]
            recent[r].append(step_logps[r])
            piece = stops[r].feed(feeds[r](t))
            if piece:
                yield r, piece
            if stops[r].stopped:
                done[r], reasons[r] = True, stops[r].reason
            elif limits is not None and len(out_tokens[r]) >= limits[r]:
                done[r] = True
        if all(done):
            break
    results = []
    for r in range(n):
        rest = stops[r].feed(dets[r].flush()) + stops[r].flush()
        if rest:
            yield r, rest
        text = stops[r].text
        kept = kept_tokens(out_tokens[r], make, len(text))
        dropped = len(out_tokens[r]) - kept
        if dropped > len(recent[r]):  # cannot happen: see recent_size
            raise RuntimeError("stop string cut more tokens than were kept apart")
        logprob = logp_sum[r] - sum(list(recent[r])[len(recent[r]) - dropped :]) if dropped else logp_sum[r]
        results.append(Generation(text, out_tokens[r][:kept], logprob, reasons[r]))
    return results
