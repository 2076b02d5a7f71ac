"""Beam search over any DecoderStep: all beams advance together as the rows of one step."""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from ..config import SampleConfig
from ..models.lm import RNNLanguageModel
from ..text.tokenizer import Detokenizer
from .controls import Controls
from .sample import lm_start
from .protocol import DecoderStep
from .text import Generation, MakeDetokenizer, StopMatcher, TokenText, detokenizers, kept_tokens, text_of


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
    make = detokenizers(token_text, detokenizer)
    was_training = model.training
    model.eval()
    try:
        return _beam(model, prime, config, make, start_id, banned)
    finally:
        model.train(was_training)


def _beam(model, prime, cfg: SampleConfig, make: MakeDetokenizer, start_id, banned) -> list[Generation]:
    if cfg.max_tokens == 0 or cfg.max_chars == 0:
        return [Generation("", [], 0.0, "length", 0.0)]
    runner, history, first = lm_start(model, prime, start_id, cfg.beam, cfg.engine)
    return beam_steps(runner, history, first, cfg, make, banned)


def beam_steps(runner: DecoderStep, history: list[int], first: int, cfg: SampleConfig, make: MakeDetokenizer,
               banned: Iterable[int]) -> list[Generation]:
    """Beam search from a started step with ``cfg.beam`` rows (fed ``first`` next, after
    ``history`` for the controls)."""
    t0 = time.perf_counter()
    k = cfg.beam
    length = cfg.max_tokens
    device, vocab = runner.device, runner.vocab_size
    controls = Controls(cfg, history, banned, k, vocab, device)
    same_scores, stateless = controls.scores_are_logp, controls.stateless
    if stateless and not cfg.stop and cfg.max_chars is None:
        return _fixed_length(runner, first, cfg, make, controls, t0)
    tokens = torch.full((k,), first, dtype=torch.long, device=device)
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
        text, cut = text_of(toks, make, cfg)
        kept = kept_tokens(toks, make, len(text)) if cut else len(toks)
        score = sum(scs[:kept])
        if cfg.length_penalty:
            score /= max(kept, 1) ** cfg.length_penalty
        finished.append(Generation(text, toks[:kept], sum(lps[:kept]), reason, score))

    for step in range(length):
        logits = runner.step(tokens)
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.float64)  # (K, V): the model's scores
        adj = controls.log_scores(logits, logp)
        cand = (alive.view(-1, 1) + adj).view(-1)  # (K * V) total scores of every extension
        top = torch.topk(cand, min(2 * k, cand.numel()))
        flat = top.indices  # row * V + token
        # One host transfer for the totals, positions, log-probabilities and scores of the
        # candidates (small ops dominate a beam step on the CPU). Where only bans apply, a
        # candidate's score is its log-probability (a banned one is never picked alive).
        picked = [top.values, flat.double(), logp.view(-1)[flat]]
        if not same_scores:
            picked.append(adj.view(-1)[flat])
        values = torch.stack(picked).tolist()
        totals_t, flat_t, lp_t = values[0], values[1], values[2]
        sc_t = values[-1]
        last = step == length - 1
        timed_out = cfg.max_time is not None and time.perf_counter() - t0 > cfg.max_time
        rows, next_tokens, entries, new_tracks, totals = [], [], [], [], []
        for i, (total, index) in enumerate(zip(totals_t, flat_t)):
            if total == float("-inf") or len(rows) == k:
                break
            row, tok = divmod(int(index), vocab)
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
        if not stateless:
            controls.reorder(index)
            controls.push(torch.tensor(next_tokens, device=device), next_tokens)
        if tracks is not None:
            tracks = new_tracks + [(new_tracks[0][0].clone(), new_tracks[0][1].clone()) for _ in range(pad)]
        alive = torch.tensor(totals + [float("-inf")] * pad, dtype=torch.float64, device=device)
        tokens = torch.tensor(next_tokens + [first] * pad, dtype=torch.long, device=device)
    finished.sort(key=lambda g: g.score, reverse=True)
    return finished[: cfg.num_return]


def _fixed_length(runner: DecoderStep, first: int, cfg: SampleConfig, make: MakeDetokenizer, controls: Controls,
                  t0: float) -> list[Generation]:
    """``beam_steps`` where no hypothesis can end before the length limit and only bans
    apply (no stop strings, no character limit, no controls that keep a history): each
    step keeps the ``k`` best extensions on the device, and the hypotheses are traced back
    once, at the end, instead of step by step on the host. A hypothesis's log-probability
    is its running score, summed in the same order as the general loop sums its tokens':
    the same hypotheses and scores as that loop."""
    assert controls.stateless
    k, length, vocab, device = cfg.beam, cfg.max_tokens, runner.vocab_size, runner.device
    ban = controls.ban if controls.ban.numel() else None
    tokens = torch.full((k,), first, dtype=torch.long, device=device)
    alive = torch.full((k,), float("-inf"), dtype=torch.float64, device=device)
    alive[0] = 0.0  # at the start all beams are the same: only one of them expands
    parents, picks = [], []
    reason = "length"
    for step in range(length):
        logits = runner.step(tokens)
        total = torch.log_softmax(logits, dim=-1, dtype=torch.float64)  # a new tensor, changed in place below
        if ban is not None:
            total.index_fill_(1, ban, float("-inf"))
        top = torch.topk(total.add_(alive.view(-1, 1)).view(-1), min(k, total.numel()))
        rows = torch.div(top.indices, vocab, rounding_mode="floor")
        tokens = top.indices.remainder(vocab)
        parents.append(rows)
        picks.append(tokens)
        alive = top.values
        if step == length - 1:
            break
        if cfg.max_time is not None and time.perf_counter() - t0 > cfg.max_time:
            reason = "time"
            break
        runner.reorder(rows)
    parent_h, tok_h = torch.stack(parents).tolist(), torch.stack(picks).tolist()
    finished = []
    for j, logprob in enumerate(alive.tolist()):
        if logprob == float("-inf"):  # fewer live extensions than beams
            continue
        toks = []
        row = j
        for step in range(len(tok_h) - 1, -1, -1):
            toks.append(tok_h[step][row])
            row = parent_h[step][row]
        toks.reverse()
        text, _ = text_of(toks, make, cfg)
        score = logprob
        if cfg.length_penalty:
            score /= max(len(toks), 1) ** cfg.length_penalty
        finished.append(Generation(text, toks, logprob, reason, score))
    finished.sort(key=lambda g: g.score, reverse=True)
    return finished[: cfg.num_return]


def batch_beam_steps(runner, sources: int, first: int, cfg: SampleConfig, make: MakeDetokenizer,
                     banned: Iterable[int], end_id: int, limits: list[int]) -> list[list[Generation]]:
    """Beam search for ``sources`` inputs at once (a sequence-to-sequence decoder): the
    runner has ``cfg.beam`` rows per source, source by source, and every row is fed
    ``first`` (SOS) first. For each source, its ``cfg.num_return`` best hypotheses.

    A hypothesis ends at ``end_id`` (EOS: its log-probability counts, its text does not)
    or at ``limits[source]`` tokens (finish reason "length"). Finished hypotheses are
    ranked by score / length ** length_penalty (length counts EOS). A hypothesis ends at
    EOS only when that extension ranks among the ``beam`` best of its step (fairseq's
    rule), and a source stops once ``beam`` hypotheses have ended and no live one could
    rank above them (``_settled``); a stopped source's rows leave the batch
    (``runner.keep_sources``), so the step gets cheaper as sources finish.
    """
    k = cfg.beam
    device, vocab = runner.device, runner.vocab_size
    controls = Controls(cfg, [], banned, sources * k, vocab, device)
    tokens = torch.full((sources * k,), first, dtype=torch.long, device=device)
    alive = torch.full((sources, k), float("-inf"), dtype=torch.float64, device=device)
    alive[:, 0] = 0.0  # at the start a source's beams are the same: only one of them expands
    active = list(range(sources))  # the sources still searching, in the order of their rows
    # Per step, per row: (parent row in the previous step's numbering, token, log-prob, score).
    history: list[list[tuple[int, int, float, float]]] = []
    finished: list[list[Generation]] = [[] for _ in range(sources)]

    def finish(src: int, row: int, tok: int, lp: float, sc: float, reason: str) -> None:
        toks, lps, scs = [tok], [lp], [sc]
        for step in range(len(history) - 1, -1, -1):
            row, t, l, c = history[step][row]
            toks.append(t)
            lps.append(l)
            scs.append(c)
        toks.reverse()
        score = sum(scs) / (len(toks) ** cfg.length_penalty if cfg.length_penalty else 1.0)
        text_toks = toks[:-1] if reason == "end" else toks
        finished[src].append(Generation(text_of_ids(text_toks, make), text_toks, sum(lps), reason, score))

    for step in range(max(limits)):
        b = len(active)
        logits = runner.step(tokens)  # (b * k, V)
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.float64)
        adj = controls.log_scores(logits, logp)
        cand = (alive.view(-1, 1) + adj).view(b, k * vocab)  # every extension of every beam of a source
        top = torch.topk(cand, min(2 * k, k * vocab), dim=-1)  # (b, 2k)
        rows_t = top.indices // vocab + torch.arange(b, device=device).view(-1, 1) * k  # (b, 2k) row numbers
        toks_t = top.indices % vocab
        flat = rows_t * vocab + toks_t
        picked = [top.values, logp.view(-1)[flat]] + ([] if controls.scores_are_logp else [adj.view(-1)[flat]])
        host = torch.stack(picked + [rows_t.double(), toks_t.double()]).tolist()
        totals_h, lps_h, scs_h, rows_h, toks_h = host[0], host[1], host[-3], host[-2], host[-1]
        keep, next_rows, next_toks, next_alive, entries = [], [], [], [], []
        for j, src in enumerate(active):
            live: list[tuple[int, int, float, float, float]] = []
            at_limit = step + 1 >= limits[src]
            for rank, (total, lp, sc, row, tok) in enumerate(zip(totals_h[j], lps_h[j], scs_h[j], rows_h[j],
                                                                     toks_h[j])):
                if total == float("-inf") or len(live) == k:
                    break
                row, tok = int(row), int(tok)
                if tok == end_id:
                    # Only an ending among the k best extensions competes (as in fairseq): one
                    # ranked below them would fill the finished list with poor hypotheses.
                    if rank < k:
                        finish(src, row, tok, lp, sc, "end")
                elif at_limit:
                    finish(src, row, tok, lp, sc, "length")
                else:
                    live.append((row, tok, lp, sc, total))
            if not live or at_limit or _settled(finished[src], live[0][4], step + 2, k, cfg.length_penalty):
                continue  # this source is done
            keep.append(j)
            live += [(live[0][0], live[0][1], live[0][2], live[0][3], float("-inf"))] * (k - len(live))  # dead fillers
            for row, tok, lp, sc, total in live:
                next_rows.append(row)
                next_toks.append(tok)
                next_alive.append(total)
                entries.append((row, tok, lp, sc))
        if not keep:
            break
        history.append(entries)
        index = torch.tensor(next_rows, device=device)
        runner.reorder(index)
        if len(keep) < b:
            runner.keep_sources(torch.tensor(keep, device=device))
            active = [active[j] for j in keep]
        controls.reorder(index)
        tokens = torch.tensor(next_toks, dtype=torch.long, device=device)
        controls.push(tokens, next_toks)
        alive = torch.tensor(next_alive, dtype=torch.float64, device=device).view(len(active), k)
    for gens in finished:
        gens.sort(key=lambda g: g.score, reverse=True)
    return [gens[: cfg.num_return] for gens in finished]


def _settled(finished: list[Generation], best_live: float, length: int, k: int, penalty: float) -> bool:
    """Whether a source's search can stop: ``k`` hypotheses have ended and the best live
    one (total ``best_live``, ``length`` tokens if it ended next) would not rank above the
    k-th of them. Exact without a length penalty (totals only fall as hypotheses grow); with
    one, the usual estimate (Hugging Face's ``early_stopping=False``)."""
    if len(finished) < k:
        return False
    kth = sorted((g.score for g in finished), reverse=True)[k - 1]
    return best_live / (length ** penalty if penalty else 1.0) <= kth


def text_of_ids(ids: list[int], make: MakeDetokenizer) -> str:
    det = make()
    return "".join(det.feed(i) for i in ids) + det.flush()
