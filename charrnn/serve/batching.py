"""Sampling many requests to one language model at once: continuous batching.

Requests come and go at any step. Every row of every active request (a request with
``n`` samples has ``n`` rows) is one row of a single ``StepRunner``, so a step is one
set of matrix products for all of them; a request joins after reading its prime alone
(one forward pass) and leaves as soon as its rows are done, without waiting for the
others. The rule per row is the engine's (``decoding.sample.sample_steps``): the same
controls, the same seeding (row i of a request draws from its own generator seeded
seed + i, in chunks), the same stop strings and log-probabilities. A request alone in
the batch therefore gets exactly what ``LanguageModel.sample`` gives it; beside others,
the same up to the floating-point differences of a bigger matrix product.

Rows whose controls keep no per-row history (no repetition penalty, no n-gram blocking)
and that share temperature, top-k, top-p, min-p and greedy are sampled as one group: one
softmax, one cumulative sum and one search for all of them.

    runner.hc   (2, L, R, H)   h and c of every row, requests side by side:
                [ req A: rows 0..nA-1 | req B: rows 0..nB-1 | ... ]

``RoundRobin`` is the alternative that shares nothing: each request runs the engine's
own ``iter_sample`` and the requests take turns, one piece each. ``benchmarks/
serve_load.py`` measures the two against each other.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import torch

from ..config import SampleConfig
from ..decoding import Controls, Generation, StepRunner, StopMatcher, iter_sample, make_generator
from ..decoding.protocol import read_prime
from ..decoding.text import kept_tokens

# What a request hears from the worker: ("text", [(row, piece), ...]) after a step,
# ("done", [Generation per row]) at the end, or ("error", exception).
Post = Callable[[tuple], None]


class Job:
    """One prompt of a completion request: ``config.num_samples`` rows after ``prime``."""

    def __init__(self, prime: torch.Tensor, config: SampleConfig, post: Post):
        self.prime, self.config, self.post = prime, config, post
        self.cancelled = False  # set from the event loop when the client goes away

    def cancel(self) -> None:
        self.cancelled = True


class _Rows:
    """The per-row decoding state of one job inside a Batch (as in ``sample_steps``)."""

    def __init__(self, job: Job, history: list[int], first: int, model_parts: dict, device: torch.device):
        cfg = job.config
        n = cfg.num_samples
        self.job, self.cfg, self.n, self.first = job, cfg, n, first
        self.length = cfg.max_tokens
        self.t0 = time.perf_counter()
        self.steps = 0
        self.controls = Controls(cfg, history, model_parts["banned"], n, model_parts["vocab"], device)
        # Rows whose controls keep no history can share one group's sampling arithmetic.
        self.shared = self.controls.seen is None and self.controls.blocker is None
        self.gens = [make_generator(None if cfg.seed is None else cfg.seed + i, device) for i in range(n)]
        self.chunk = max(1, min(self.length, 1024))
        self.uniforms = torch.empty(n, 0, device=device)
        self.out_tokens: list[list[int]] = [[] for _ in range(n)]
        self.logp_sum = [0.0] * n
        recent_size = 8 * max((len(x) for x in cfg.stop), default=0) + 16
        self.recent = [deque(maxlen=recent_size) for _ in range(n)]
        self.stops = [StopMatcher(cfg.stop, limit=cfg.max_chars) for _ in range(n)]
        self.make = model_parts["detokenizer"]
        self.dets = [self.make() for _ in range(n)]
        self.done = [False] * n
        self.reasons = ["length"] * n
        self.offset = 0  # first row of this job in the batch

    @property
    def finished(self) -> bool:
        return all(self.done) or self.steps >= self.length or self.job.cancelled

    def signature(self) -> tuple:
        """Jobs with equal signatures are sampled as one group."""
        c = self.cfg
        return (c.greedy, c.temperature, c.top_k, c.top_p, c.min_p) if self.shared else ("own", id(self))

    def next_uniform(self) -> torch.Tensor:
        """One uniform number per row, (n, 1), from each row's own generator."""
        if self.uniforms.shape[1] == 0:
            self.uniforms = torch.stack([torch.rand(self.chunk, generator=g, device=g.device, dtype=torch.float64)
                                         for g in self.gens])
        u, self.uniforms = self.uniforms[:, :1], self.uniforms[:, 1:]
        return u

    def check_time(self) -> None:
        if self.cfg.max_time is not None and time.perf_counter() - self.t0 > self.cfg.max_time:
            for r in range(self.n):
                if not self.done[r]:
                    self.done[r], self.reasons[r] = True, "time"

    def consume(self, ids: list[int], logps: list[float]) -> list[tuple[int, str]]:
        """Take this step's token of each row; return the text that can be shown now."""
        self.steps += 1
        pieces = []
        for r in range(self.n):
            if self.done[r]:
                continue
            t = ids[r]
            self.out_tokens[r].append(t)
            self.logp_sum[r] += logps[r]
            self.recent[r].append(logps[r])
            piece = self.stops[r].feed(self.dets[r].feed(t))
            if piece:
                pieces.append((r, piece))
            if self.stops[r].stopped:
                self.done[r], self.reasons[r] = True, self.stops[r].reason
        return pieces

    def results(self) -> tuple[list[tuple[int, str]], list[Generation]]:
        """The held-back text of each row, and the generations (as ``sample_steps`` ends)."""
        pieces, gens = [], []
        for r in range(self.n):
            rest = self.stops[r].feed(self.dets[r].flush()) + self.stops[r].flush()
            if rest:
                pieces.append((r, rest))
            text = self.stops[r].text
            kept = kept_tokens(self.out_tokens[r], self.make, len(text))
            dropped = len(self.out_tokens[r]) - kept
            recent = list(self.recent[r])
            logprob = self.logp_sum[r] - sum(recent[len(recent) - dropped:]) if dropped else self.logp_sum[r]
            gens.append(Generation(text, self.out_tokens[r][:kept], logprob, self.reasons[r]))
        return pieces, gens


class Batch:
    """All active sampling jobs of one language model as the rows of one StepRunner."""

    def __init__(self, lm):
        self.model = lm.model
        tok = lm.tokenizer
        self.start_id = tok.start_id
        self.runner = StepRunner(self.model)
        self.device = self.runner.device
        self.parts = {"banned": tok.banned_ids, "vocab": self.runner.vocab_size, "detokenizer": tok.detokenizer}
        self.jobs: list[_Rows] = []
        self.tokens = torch.zeros(0, dtype=torch.long, device=self.device)
        self.groups: list[tuple[list[_Rows], torch.Tensor | None]] = []

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def rows(self) -> int:
        return int(self.tokens.numel())

    def add(self, job: Job) -> None:
        """Read the job's prime and append its rows to the batch."""
        prime, state, first = read_prime(self.model, job.prime, self.start_id)
        rows = _Rows(job, prime.tolist(), first, self.parts, self.device)
        if rows.length == 0:
            _finish(rows)
            return
        L, H, n = self.runner.layers, self.runner.hidden, rows.n
        if state is None:
            h = c = torch.zeros(L, 1, H, device=self.device)
        elif isinstance(state, tuple):
            h, c = state
        else:
            h, c = state, torch.zeros_like(state)
        new = torch.stack([h.float().expand(L, n, H), c.float().expand(L, n, H)])  # (2, L, n, H)
        old = self.runner.hc if self.jobs else new[:, :, :0]
        self._resize(torch.cat([old, new], dim=2))
        self.tokens = torch.cat([self.tokens, torch.full((n,), first, dtype=torch.long, device=self.device)])
        self.jobs.append(rows)
        self._regroup()

    def _resize(self, hc: torch.Tensor) -> None:
        self.runner.start(None, hc.shape[2])
        self.runner.hc.copy_(hc)

    def _regroup(self) -> None:
        offset = 0
        by_sig: dict[tuple, list[_Rows]] = {}
        for j in self.jobs:
            j.offset = offset
            offset += j.n
            by_sig.setdefault(j.signature(), []).append(j)
        self.groups = []
        for jobs in by_sig.values():
            if len(jobs) == len(self.jobs):
                self.groups.append((jobs, None))  # every row: no gather needed
            else:
                idx = [j.offset + r for j in jobs for r in range(j.n)]
                self.groups.append((jobs, torch.tensor(idx, dtype=torch.long, device=self.device)))

    def step(self) -> None:
        """One token for every row; then post each job's new text and retire finished jobs."""
        for j in self.jobs:
            j.check_time()
        logits = self.runner.step(self.tokens)  # (R, V)
        logp_all = torch.log_softmax(logits, dim=-1)
        nxt = self.tokens.clone()
        for jobs, idx in self.groups:
            self._choose(jobs, logits if idx is None else logits.index_select(0, idx), nxt, idx)
        ids = nxt.tolist()
        step_logps = logp_all.gather(1, nxt.view(-1, 1)).view(-1).tolist()
        for j in self.jobs:
            if j.finished:  # ended by time, cancellation or a blocked row before this step
                continue
            a, b = j.offset, j.offset + j.n
            if not j.shared:
                j.controls.push(nxt[a:b], ids[a:b], [not d for d in j.done])
            pieces = j.consume(ids[a:b], step_logps[a:b])
            if pieces and not j.job.cancelled:
                j.job.post(("text", pieces))
        self.tokens = nxt
        self._retire()

    def _choose(self, jobs: list[_Rows], logits: torch.Tensor, out: torch.Tensor, idx: torch.Tensor | None) -> None:
        """The next token of the group's rows (the engine's rule), written into ``out``."""
        lead = jobs[0]
        scores = lead.controls.scores(logits)
        if lead.controls.blocker is not None:  # a group of one job
            stuck = torch.isneginf(scores).all(dim=-1)
            for r in stuck.nonzero().view(-1).tolist():
                if not lead.done[r]:
                    lead.done[r], lead.reasons[r] = True, "blocked"
            scores[stuck] = 0.0
        if lead.cfg.greedy:
            chosen = torch.argmax(scores, dim=-1)
        else:
            probs = torch.softmax(lead.controls.sampling(scores), dim=-1)
            u = lead.next_uniform() if len(jobs) == 1 else torch.cat([j.next_uniform() for j in jobs])
            cdf = torch.cumsum(probs, dim=-1, dtype=torch.float64)
            chosen = torch.searchsorted(cdf, u * cdf[:, -1:]).view(-1).clamp_(max=probs.shape[1] - 1)
            bad = probs.gather(1, chosen.view(-1, 1)).view(-1) <= 0
            if bool(bad.any()):
                chosen = torch.where(bad, torch.argmax(probs, dim=-1), chosen)
        if idx is None:
            out.copy_(chosen)
        else:
            out.index_copy_(0, idx, chosen)

    def _retire(self) -> None:
        ended = [j for j in self.jobs if j.finished]
        if not ended:
            return
        for j in ended:
            if not j.job.cancelled:
                _finish(j)
        live = [j for j in self.jobs if not j.finished]
        keep = [j.offset + r for j in live for r in range(j.n)]
        if live:
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            self._resize(self.runner.hc.index_select(2, index))
            self.tokens = self.tokens.index_select(0, index)
        else:
            self.tokens = self.tokens[:0]
        self.jobs = live
        self._regroup()

    def fail(self, error: BaseException) -> None:
        """Something went wrong in a step: every job hears of it and the batch empties."""
        for j in self.jobs:
            j.job.post(("error", error))
        self.jobs, self.groups = [], []
        self.tokens = self.tokens[:0]


def _finish(rows: _Rows) -> None:
    pieces, gens = rows.results()
    if pieces:
        rows.job.post(("text", pieces))
    rows.job.post(("done", gens))


class RoundRobin:
    """Each job runs the engine's ``iter_sample`` on its own; the jobs take turns, one
    piece of text each (nothing is shared between them)."""

    def __init__(self, lm):
        self.lm = lm
        self.active: list[tuple[Job, object]] = []

    def __len__(self) -> int:
        return len(self.active)

    @property
    def rows(self) -> int:
        return sum(job.config.num_samples for job, _ in self.active)

    def add(self, job: Job) -> None:
        tok = self.lm.tokenizer
        it = iter_sample(self.lm.model, job.prime, job.config, start_id=tok.start_id, detokenizer=tok.detokenizer,
                         banned=tok.banned_ids)
        self.active.append((job, it))

    def step(self) -> None:
        still = []
        for job, it in self.active:
            if job.cancelled:
                it.close()
                continue
            try:
                row, piece = next(it)
            except StopIteration as end:
                job.post(("done", end.value))
                continue
            except Exception as e:  # noqa: BLE001 - a bug in one job ends that job only
                job.post(("error", e))
                continue
            job.post(("text", [(row, piece)]))
            still.append((job, it))
        self.active = still

    def fail(self, error: BaseException) -> None:
        for job, it in self.active:
            it.close()
            job.post(("error", error))
        self.active = []
