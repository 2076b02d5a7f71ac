"""Validation bpc reached in the same wall-clock budget by `charrnn train` (its defaults and
chosen cells) and by small decoder-only Transformers, one after the other on one machine.

    python benchmarks/lm_side_by_side.py [--budget 300 | --budget 120 300] [--threads 2] [--corpus tinyshakespeare]
        [--contenders charrnn lstm mingru minlstm transformer:4,192,128,16 transformer:2,128,128,32]
        [--charrnn-args "--dropout 0.2"] [--no-rescore] [--write]
    python benchmarks/lm_side_by_side.py --self-check

Contenders: ``charrnn`` is `charrnn train CORPUS --time-budget S` with nothing else;
a cell name (``lstm``, ``gru``, ``mingru``, ``minlstm``, ...) adds ``--cell NAME``, the
size left to charrnn's size chooser; ``transformer:L,D,CTX,BATCH`` is the Transformer of
tiny_transformer.py with L blocks of width D (D // 64 heads), a context of CTX characters
and BATCH random training windows a step. Each gets the same budget, its final evaluation
included, and they run one at a time. A contender that fails (say a cell this charrnn does
not have yet) prints one line and the others carry on.

Every contender is scored on the whole validation split (the last 10% of the characters,
charrnn's own `split_text` with `TrainConfig`'s defaults), every character after the first
scored once, in bits per character:

- charrnn: the best checkpoint's validation bpc from the run's summary (its in-budget
  validation: 16 streams over the whole split, each warmed up on 256 characters), and, as
  quality_vs_reference.py does, the same checkpoint rescored afterwards with
  `charrnn eval perplexity RUN val.txt` (the `val bpc` column; outside the budget; skipped
  with ``--no-rescore``).
- Transformer: sliding windows of CTX characters with stride CTX // 2, each window scoring
  only the characters the earlier ones did not (its last half; all of the first window),
  so every character is scored once with at least half a window of context. Training
  draws random windows of the training text; AdamW (decay on 2-D weights only), linear
  warmup, cosine decay to 10% over the steps planned from the measured step time; a slice
  of the validation text is scored at 25/50/75/100% of the plan when that is cheap and
  the best weights are kept. The time of the final whole-split scoring is measured on a
  small piece first and kept back from training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: charrnn depends on tomli there
    import tomli as tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, corpus_path, record  # noqa: E402
from tiny_transformer import TinyTransformer, lr_at, make_optimizer  # noqa: E402

from charrnn.config import TrainConfig  # noqa: E402
from charrnn.text.io import read_text  # noqa: E402
from charrnn.text.streams import split_text  # noqa: E402

DEFAULT_CONTENDERS = ["charrnn", "lstm", "mingru", "minlstm", "transformer:4,192,128,16", "transformer:2,128,128,32"]
IGNORE = -100
EVAL_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of the planned steps: where the slice is scored


def load_split(path: str) -> tuple[str, str]:
    """charrnn's train/validation split of a corpus file (`charrnn train`'s defaults)."""
    cfg = TrainConfig()
    return split_text(read_text(path), cfg.val_fraction, cfg.val_max_chars)


# ----------------------------------------------------------------------------- scoring

def windows(targets: int, ctx: int) -> list[tuple[int, int]]:
    """Sliding windows over ``targets`` prediction positions (target j predicts id j + 1
    from ids ..j): (start, skip) per window, which reads ids[start : start + min(ctx,
    targets)] and scores its positions from ``skip`` on. The first window scores all of
    its positions, each later one the last ctx // 2 (the very last one fewer, its start
    pulled back so that it is still ctx long)."""
    stride = max(1, ctx // 2)
    out, done = [], 0
    while done < targets:
        end = min(done + (ctx if done == 0 else stride), targets)
        start = max(0, end - ctx)
        out.append((start, done - start))
        done = end
    return out


@torch.inference_mode()
def sliding_score(model: TinyTransformer, ids: torch.Tensor, unk_id: int | None = 0, batch: int = 64) -> dict:
    """Total NLL (nats) of ``ids`` (1-D) under ``model``, every target after the first id
    scored once (targets that are ``unk_id`` read but not scored, as charrnn does)."""
    was_training = model.training
    model.eval()
    try:
        m, ctx = ids.numel() - 1, model.context
        if m < 1:
            return {"nll": 0.0, "tokens": 0, "unknown": 0, "bpc": float("nan")}
        length = min(ctx, m)
        wins = torch.tensor(windows(m, ctx))
        offsets = torch.arange(length)
        total = torch.zeros((), dtype=torch.float64)
        tokens = 0
        for i in range(0, len(wins), batch):
            w = wins[i : i + batch]
            idx = w[:, :1] + offsets  # (B, length)
            x, y = ids[idx].long(), ids[idx + 1].long()
            y = y.masked_fill(offsets < w[:, 1:], IGNORE)
            if unk_id is not None:
                y = y.masked_fill(y == unk_id, IGNORE)
            logits = model(x)
            total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                     ignore_index=IGNORE, reduction="sum").double()
            tokens += int((y != IGNORE).sum())
        nll = float(total)
        return {"nll": nll, "tokens": tokens, "unknown": m - tokens, "bpc": nll / math.log(2) / max(tokens, 1)}
    finally:
        model.train(was_training)


def self_check() -> None:
    """Every target scored exactly once, with at least half a window of context (all it has
    near the start), and the batched sliding score equal to a naive one-position-at-a-time
    loop over the same contexts."""
    for m in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 257]:
        for ctx in [1, 2, 3, 4, 7, 8, 16]:
            scored = []
            for start, skip in windows(m, ctx):
                length = min(ctx, m)
                assert 0 <= start and start + length <= m and 0 <= skip < length, (m, ctx, start, skip)
                for p in range(skip, length):
                    j = start + p
                    assert p + 1 >= min(j + 1, ctx / 2), (m, ctx, j, p)  # context p + 1 ids
                    scored.append(j)
            assert sorted(scored) == list(range(m)), (m, ctx, scored)
    torch.manual_seed(0)
    for ctx, n in [(8, 2), (8, 5), (8, 9), (8, 10), (8, 41), (7, 30), (16, 200)]:
        model = TinyTransformer(vocab=6, layers=2, d_model=16, context=ctx, heads=2, dropout=0.1).train()
        ids = torch.randint(0, 6, (n,))  # 0 is the unknown id: read, not scored
        got = sliding_score(model, ids, unk_id=0, batch=3)
        assert model.training, "sliding_score must give the model back in training mode"
        model.eval()
        nll, tokens = 0.0, 0
        with torch.no_grad():
            for start, skip in windows(n - 1, ctx):
                for p in range(skip, min(ctx, n - 1)):
                    target = int(ids[start + p + 1])
                    if target == 0:
                        continue
                    logits = model(ids[start : start + p + 1].view(1, -1))[0, -1].double()
                    nll -= float(torch.log_softmax(logits, -1)[target])
                    tokens += 1
        assert tokens == got["tokens"] == n - 1 - int((ids[1:] == 0).sum()), (tokens, got)
        assert abs(nll - got["nll"]) < 1e-4 * max(1.0, abs(nll)), (ctx, n, nll, got["nll"])
        if n - 1 <= ctx:  # one window: the same as one forward pass over the text
            with torch.no_grad():
                logits = model(ids[:-1].view(1, -1))[0]
            y = ids[1:].masked_fill(ids[1:] == 0, IGNORE)
            full = float(F.cross_entropy(logits.double(), y, ignore_index=IGNORE, reduction="sum"))
            assert abs(full - got["nll"]) < 1e-4 * max(1.0, abs(full)), (full, got["nll"])
    print("self-check passed: windows cover every target once with >= ctx/2 context; batched sliding score "
          "matches the naive per-position loop")


# ------------------------------------------------------------------------ contenders

CHARRNN_ENV = dict(os.environ)  # the charrnn subprocesses' environment (main sets the speed cache)


def charrnn_run(contender: str, path: str, val_text: str, budget: float, threads: int, extra: list[str],
                rescore: bool) -> dict:
    cell = [] if contender == "charrnn" else ["--cell", contender]
    with tempfile.TemporaryDirectory(prefix="charrnn-sbs-") as tmp:
        cmd = [sys.executable, "-m", "charrnn", "train", path, "--time-budget", f"{budget:g}", "--threads", str(threads),
               *cell, *extra, "--out", f"{tmp}/run", "--json", "--quiet"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * budget + 300, env=CHARRNN_ENV)
        wall = time.perf_counter() - t
        if proc.returncode:
            return {"error": last_line(proc.stderr or proc.stdout), "seconds": wall}
        s = json.loads(proc.stdout)
        try:  # the cell and size the run used (its resolved configuration)
            with open(f"{tmp}/run/config.toml", "rb") as f:
                conf = tomllib.load(f)
            conf = {k: v for sect in [conf, *(v for v in conf.values() if isinstance(v, dict))] for k, v in sect.items()}
        except (OSError, tomllib.TOMLDecodeError):
            conf = {}
        size = ((s.get("sizing") or {}).get("reason") or "").split(" chosen")[0]
        if not size and conf.get("hidden-size"):
            size = f"{conf.get('layers', '?')}x{conf['hidden-size']} at batch {conf.get('batch-size', '?')}"
        row = {"val_bpc": s["val_bpc"], "val_bpc_in_training": s["val_bpc"], "final_val_bpc": s.get("final_val_bpc"),
               "params": s["params"], "tokens_per_sec": s["train_tokens_per_sec"], "steps": s["steps"],
               "seconds": wall, "elapsed": s["elapsed"], "epochs": s.get("epochs"), "best_step": s.get("best_step"),
               "cell": conf.get("cell"), "model": f"{conf.get('cell', '')} {size}".strip(),
               "command": shlex.join(["charrnn", "train", os.path.basename(path), *cmd[5:-4]])}
        if rescore:
            Path(f"{tmp}/val.txt").write_text(val_text, encoding="utf-8")
            t = time.perf_counter()
            ev = subprocess.run([sys.executable, "-m", "charrnn", "eval", "perplexity", f"{tmp}/run", f"{tmp}/val.txt",
                                 "--threads", str(threads), "--json"], capture_output=True, text=True,
                                env=CHARRNN_ENV)
            if ev.returncode:
                row["rescore_error"] = last_line(ev.stderr)
            else:
                exact = json.loads(ev.stdout)
                row.update(val_bpc=exact["bpc"], val_tokens=exact["tokens"], rescore_seconds=time.perf_counter() - t)
    return row


def last_line(text: str) -> str:
    """The last line with words in it (rich's error boxes stripped)."""
    lines = [ln.strip(" │╭╮╰╯─\t") for ln in (text or "").splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else "no output"


def transformer_run(spec: str, train_text: str, val_text: str, budget: float, args) -> dict:
    t0 = time.perf_counter()  # the budget starts here: encoding, model, probe, training, scoring
    layers, d_model, ctx, batch = (int(v) for v in spec.split(":", 1)[1].split(","))
    torch.manual_seed(args.seed)
    index = {c: i + 1 for i, c in enumerate(sorted(set(train_text)))}  # 0: unknown (read, not scored)
    train = torch.tensor([index[c] for c in train_text], dtype=torch.long)
    val = torch.tensor([index.get(c, 0) for c in val_text], dtype=torch.long)
    model = TinyTransformer(len(index) + 1, layers, d_model, ctx, dropout=args.tf_dropout)
    opt = make_optimizer(model, args.tf_lr, args.tf_weight_decay)

    # Time the final scoring on a piece of the validation text (after a warm-up pass) and
    # keep it back from training; every slice evaluation measures it again.
    sliding_score(model, val[: ctx + 1])
    probe = val[: min(val.numel(), max(64 * (ctx // 2) + ctx, 4096) + 1)]
    t = time.perf_counter()
    sliding_score(model, probe)
    per_target = (time.perf_counter() - t) / (probe.numel() - 1)
    targets = val.numel() - 1

    def deadline_for(per_target: float) -> float:  # when training must stop
        return t0 + budget - (1.25 * per_target * targets + 1.0)

    deadline = deadline_for(per_target)
    # Periodic scoring of a slice, if all of it costs at most 2% of the budget.
    slice_targets = min(targets, int(0.02 * budget / len(EVAL_FRACTIONS) / per_target))
    eval_ids = val[: slice_targets + 1] if slice_targets >= 4 * ctx else None
    slice_cost = per_target * slice_targets if eval_ids is not None else 0.0
    if deadline - time.perf_counter() < 1.0:
        raise RuntimeError(f"no time left to train in {budget:g} s: scoring the validation text needs "
                           f"~{per_target * targets:.1f} s (+25% and 1 s kept back)")

    offsets = torch.arange(ctx + 1)
    high = train.numel() - ctx
    step, planned, warmup, train_secs, eval_secs = 0, 10**9, args.tf_warmup, 0.0, 0.0
    best, best_state, curve, next_eval, loss = math.inf, None, [], 0, float("nan")
    while True:
        now = time.perf_counter()
        if step == 8 or (step > 8 and step % 25 == 0):  # (re)plan from the mean step time so far
            evals_left = len(EVAL_FRACTIONS) - next_eval if eval_ids is not None else 0
            planned = max(step + 1, step + int((deadline - now - evals_left * slice_cost) / (train_secs / step)))
            if step == 8:
                warmup = min(args.tf_warmup, max(1, planned // 10))
        if step >= planned or now >= deadline:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.tf_lr, warmup, planned)
        chunk = train[torch.randint(0, high, (batch, 1)) + offsets]  # random windows, (B, CTX + 1)
        logits = model(chunk[:, :-1])
        loss_t = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        train_secs += time.perf_counter() - now
        if step % 50 == 0:
            loss = loss_t.item()
        at_end = step >= planned or time.perf_counter() >= deadline
        if eval_ids is not None and next_eval < len(EVAL_FRACTIONS) and (
                at_end or (step >= 8 and step >= EVAL_FRACTIONS[next_eval] * planned)):
            t = time.perf_counter()
            bpc = sliding_score(model, eval_ids)["bpc"]
            eval_secs += time.perf_counter() - t
            per_target = (time.perf_counter() - t) / slice_targets  # the machine's speed now
            deadline, slice_cost = deadline_for(per_target), per_target * slice_targets
            curve.append({"step": step, "slice_bpc": bpc, "train_bpc": loss_t.item() / math.log(2),
                          "seconds": time.perf_counter() - t0})
            next_eval += 1
            if bpc < best:
                # the weights as they are when training ends here, else a copy
                best, best_state = bpc, None if at_end else {k: v.detach().clone() for k, v in model.state_dict().items()}
            if at_end:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    t = time.perf_counter()
    score = sliding_score(model, val)
    score_secs = time.perf_counter() - t
    wall = time.perf_counter() - t0
    return {"val_bpc": score["bpc"], "params": model.num_params(), "tokens_per_sec": step * batch * ctx / max(train_secs, 1e-9),
            "steps": step, "seconds": wall, "planned_steps": planned, "warmup_steps": warmup, "train_seconds": train_secs,
            "slice_eval_seconds": eval_secs, "score_seconds": score_secs,
            "reserved_for_scoring": t0 + budget - deadline, "last_train_loss_bpc": loss / math.log(2),
            "val_tokens": score["tokens"], "val_unknown": score["unknown"], "slice_targets": slice_targets if eval_ids is not None else 0,
            "curve": curve,
            "model": f"{layers}x{d_model} ctx {ctx} batch {batch}, {model.blocks[0].heads} heads, lr {args.tf_lr:g}, "
                     f"dropout {args.tf_dropout:g}"}


# ------------------------------------------------------------------------------ main

def table(budget: float, rows: list[tuple[str, dict]]) -> str:
    out = [f"Budget {budget:g} s", "", "| contender | model | val bpc | parameters | train tokens/s | steps | seconds (wall) |",
           "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        if "error" in r:
            out.append(f"| {name} | failed: {r['error'].replace('|', '/')} | - | - | - | - | {r['seconds']:.1f} |")
            continue
        bpc = f"{r['val_bpc']:.4f}"
        if r.get("val_bpc_in_training") is not None and abs(r["val_bpc_in_training"] - r["val_bpc"]) >= 5e-5:
            bpc += f" ({r['val_bpc_in_training']:.4f} in training)"
        out.append(f"| {name} | {r['model']} | {bpc} | {r['params']:,} | {r['tokens_per_sec']:,.0f} | {r['steps']:,} | "
                   f"{r['seconds']:.1f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, nargs="+", default=[300.0], help="seconds per contender (several: one table each)")
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--contenders", nargs="+", default=DEFAULT_CONTENDERS)
    ap.add_argument("--charrnn-args", default="", help="extra `charrnn train` options for every charrnn contender (one string)")
    ap.add_argument("--no-rescore", action="store_true", help="skip `charrnn eval perplexity`: report the run's own val bpc")
    ap.add_argument("--tf-lr", type=float, default=2e-3, help="Transformer peak learning rate")
    ap.add_argument("--tf-dropout", type=float, default=0.0)
    ap.add_argument("--tf-weight-decay", type=float, default=0.1)
    ap.add_argument("--tf-warmup", type=int, default=100, help="warmup steps (at most 10%% of the planned steps)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--self-check", action="store_true", help="check the sliding-window scorer and exit")
    ap.add_argument("--write", action="store_true", help="append the results to benchmarks/RESULTS.md")
    ap.add_argument("--speed-cache", default="fresh",
                    help="the speed cache charrnn's size chooser reads: 'fresh' (default: an empty one for this "
                         "invocation, so sizes are measured now, on this machine as it is, inside the first run's "
                         "budget, as on a new user's first run) or 'user' (~/.cache/charrnn/speed.json as it is)")
    args = ap.parse_args()
    if args.speed_cache == "fresh":
        # charrnn keeps measured speeds in $XDG_CACHE_HOME/charrnn/speed.json for good; one
        # taken while the machine was busy would decide every later run's size.
        CHARRNN_ENV["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="charrnn-sbs-cache-")
    elif args.speed_cache != "user":
        ap.error("--speed-cache is 'fresh' or 'user'")
    if args.self_check:
        self_check()
        return
    for c in args.contenders:
        if c.startswith("transformer:") and len(c.split(":", 1)[1].split(",")) != 4:
            ap.error(f"{c}: want transformer:LAYERS,WIDTH,CONTEXT,BATCH")

    torch.set_num_threads(args.threads)
    path = corpus_path(args.corpus)
    train_text, val_text = load_split(path)
    extra = shlex.split(args.charrnn_args)
    results, tables = {}, []
    for budget in args.budget:
        rows = []
        for name in args.contenders:
            print(f"[{budget:g} s] {name} ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            try:
                if name.startswith("transformer:"):
                    r = transformer_run(name, train_text, val_text, budget, args)
                else:
                    r = charrnn_run(name, path, val_text, budget, args.threads, extra, not args.no_rescore)
            except Exception as e:  # one contender's failure is a row, not the end of the benchmark
                r = {"error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t}
            if "error" in r:
                print(f"[{budget:g} s] {name} failed: {r['error']}", file=sys.stderr, flush=True)
            else:
                print(f"[{budget:g} s] {name}: {r['val_bpc']:.4f} bpc, {r['steps']} steps, {r['seconds']:.1f} s",
                      file=sys.stderr, flush=True)
            rows.append((name, r))
        tables.append(table(budget, rows))
        results[f"{budget:g}"] = {name: r for name, r in rows}
    head = (f"{args.corpus}: {len(train_text):,} training / {len(val_text):,} validation characters (charrnn's split); "
            f"{args.threads} threads; val bpc over the whole validation text")
    budgets = ", ".join(f"{b:g}" for b in args.budget)
    record(f"Side by side in {budgets} s: charrnn and small Transformers ({args.threads} threads)", command_line(),
           head + "\n\n" + "\n\n".join(tables),
           {"benchmark": "lm_side_by_side", "corpus": args.corpus, "threads": args.threads, "train_chars": len(train_text),
            "val_chars": len(val_text), "torch": torch.__version__, "results": results}, write=args.write)


if __name__ == "__main__":
    main()
