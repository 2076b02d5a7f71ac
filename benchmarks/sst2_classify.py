"""Sequence classification on GLUE SST-2: charrnn against a TF-IDF + logistic regression
reference (accuracy) and against a plain PyTorch loop (training speed), plus prediction speed.

    python benchmarks/sst2_classify.py [--budget SECONDS] [--best-args "--dropout 0.5 ..."]
        [--steps 300] [--warmup 10] [--rounds 2] [--threads N] [--data DIR] [--skip-reference]
        [--skip-default] [--skip-throughput] [--skip-predict] [--keep] [--quick]

Data: DIR/train.tsv (training phrases), DIR/dev.tsv (validation: picks C, charrnn's best
checkpoint), DIR/test.tsv (the 872 labelled GLUE dev sentences, used as the test set); TSV
with a `sentence<TAB>label` header. DIR defaults to $CHARRNN_CORPORA/sst2, else
../shared/corpora/sst2 next to this checkout.

1. Reference: TF-IDF word 1-2-grams + char_wb 2-5-grams, LogisticRegression (scikit-learn,
   a benchmark-only dependency: pip install scikit-learn); C chosen on dev among 1, 3, 10.
   Wall time: features + fit + test predict for the chosen C (and the whole search).
2. charrnn defaults: `charrnn train --task classify TRAIN --val-file DEV` (no limit: the
   classifier's default of 3 epochs; --budget B adds --time-budget B),
   then `charrnn eval accuracy RUN TEST`. Training wall time is measured around the subprocess.
3. charrnn "best settings": the same with --best-args appended to the train command.
4. Test accuracy / reference accuracy; target: >= 0.83, above the reference, and trained
   within 10 minutes on the CPU.
5. Training examples/s on one model (embedding 128, 1x256 bidirectional LSTM, max pool,
   dropout 0.3, batch 32, char ids): a plain loop written here (padded batches, random
   shuffle, no bucketing, no packing, AdamW 2e-3, no clipping; --warmup (10) untimed steps,
   then --steps timed) against `charrnn train --max-steps warmup+steps`. Plain and charrnn
   alternate for --rounds rounds; ratios are medians of per-round ratios. charrnn gives two numbers:
   "loop" = its metrics.jsonl progress windows after the warm-up steps (like for like with
   the plain loop) and "summary" = train_examples_per_sec of the --json summary (all steps,
   from the start of the training loop to the end of the run, so it also includes the final
   validation pass over dev.tsv and the checkpoint save).
6. `charrnn predict RUN FILE --batch-size 1|256` on the 872 test sentences: lines/s from the
   wall time minus that of `charrnn predict RUN EMPTYFILE` (start-up: torch, checkpoint).

--quick is a smoke test (budget 20 s, 5 warm-up + 20 timed steps, one throughput round,
reference on 5,000 training lines). It is not quick on a small CPU: 15 minutes on a busy
2-core machine, where the plain loop makes 3-8 examples/s (char-level padded batches are
long) and validating and predicting with the char model take minutes. All files go to a
temporary directory, removed at the end unless --keep (a failed run leaves it);
nothing is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

TARGET_ACC, TARGET_SECONDS = 0.83, 600.0
# char tokens on both sides (the plain loop's ids are characters; charrnn's default for
# sentences would be words, a different and shorter input)
SAME_MODEL = ["--hidden-size", "256", "--embedding-dim", "128", "--layers", "1", "--pool", "max",
              "--dropout", "0.3", "--batch-size", "32", "--tokenizer", "char"]


def default_data_dir() -> Path:
    env = os.environ.get("CHARRNN_CORPORA")
    if env:
        return Path(env) / "sst2"
    return Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "sst2"


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]  # skip the header
    rows = [line.rsplit("\t", 1) for line in lines if line.strip()]
    return [s.strip() for s, _ in rows], [int(y) for _, y in rows]


def charrnn(*args: str) -> tuple[str, float]:
    """Run `python -m charrnn ARGS`; (stdout, wall seconds). Exits with the command and stderr on failure."""
    cmd = [sys.executable, "-m", "charrnn", *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"command failed (exit {proc.returncode}): {shlex.join(cmd)}\n{proc.stderr.strip()}")
    return proc.stdout, wall


# ----------------------------------------------------------------------------- 1. reference

def reference(data: Path, limit: int | None) -> dict:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion
    except ImportError:
        raise SystemExit("scikit-learn is missing: .venv/bin/pip install scikit-learn (benchmark-only dependency)")
    (xtr, ytr), (xdev, ydev), (xte, yte) = (read_tsv(data / f) for f in ("train.tsv", "dev.tsv", "test.tsv"))
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    t0 = time.perf_counter()
    feats = FeatureUnion([("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                          ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))])
    xtr_f = feats.fit_transform(xtr)
    feat_secs = time.perf_counter() - t0
    xdev_f = feats.transform(xdev)
    fits = {}
    for c in (1.0, 3.0, 10.0):
        t = time.perf_counter()
        clf = LogisticRegression(C=c, max_iter=2000).fit(xtr_f, ytr)
        fits[c] = (clf, time.perf_counter() - t, (clf.predict(xdev_f) == ydev).mean())
    best_c = max(fits, key=lambda c: fits[c][2])
    clf, fit_secs, dev_acc = fits[best_c]
    t = time.perf_counter()
    acc = float((clf.predict(feats.transform(xte)) == yte).mean())
    predict_secs = time.perf_counter() - t
    return {"test_accuracy": acc, "dev_accuracy": float(dev_acc), "C": best_c, "train_lines": len(xtr),
            "features": xtr_f.shape[1], "seconds": feat_secs + fit_secs + predict_secs,
            "search_seconds": time.perf_counter() - t0, "dev_accuracy_by_C": {c: float(f[2]) for c, f in fits.items()}}


# ----------------------------------------------------------------------------- 2-3. charrnn runs

def charrnn_run(data: Path, run: Path, budget: float, threads: int, extra: list[str]) -> dict:
    out, wall = charrnn("train", "--task", "classify", str(data / "train.tsv"), "--val-file", str(data / "dev.tsv"),
                        "--out", str(run), *(["--time-budget", str(budget)] if budget else []), "--threads", str(threads),
                        "--json", "--quiet", *extra)
    s = json.loads(out)
    ev = json.loads(charrnn("eval", "accuracy", str(run), str(data / "test.tsv"), "--json")[0])
    return {"test_accuracy": ev["accuracy"], "test_macro_f1": ev["macro_f1"], "train_wall": wall,
            "val_accuracy": s.get("val_accuracy"), "steps": s.get("steps"), "epochs": s.get("epochs"),
            "examples_per_sec": s.get("examples_per_sec"), "params": s.get("params"), "elapsed": s.get("elapsed"),
            "predicted_seconds": s.get("predicted_seconds"), "sizing": s.get("sizing"), "extra": shlex.join(extra)}


def num(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def verdict(r: dict, ref: dict | None) -> str:
    ok = r["test_accuracy"] >= TARGET_ACC and (ref is None or r["test_accuracy"] > ref["test_accuracy"])
    fast = r["train_wall"] <= TARGET_SECONDS
    ratio = f"test accuracy / reference: {r['test_accuracy'] / ref['test_accuracy']:.3f}; " if ref else ""
    return (f"  {ratio}trained in {r['train_wall']:.0f} s: {'within' if fast else 'over'} the 10-minute CPU target; "
            f"target: >= {TARGET_ACC} and above the reference: {'met' if ok else 'not met'}"
            + ("" if ref else " (no reference run: accuracy only)"))


# ----------------------------------------------------------------------------- 5. throughput

class PlainClassifier(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 128, padding_idx=0)
        self.rnn = nn.LSTM(128, 256, 1, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(512, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embedding(x))  # (N, T, 512)
        h = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values  # max over the real positions
        return self.out(self.drop(h))


def plain_examples_per_sec(sentences: list[str], labels: list[int], warmup: int, steps: int, seed: int) -> float:
    chars = sorted({c for s in sentences for c in s})
    index = {c: i + 1 for i, c in enumerate(chars)}  # 0 = padding
    ids = [[index[c] for c in s] or [0] for s in sentences]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = PlainClassifier(len(chars) + 1).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    order: list[int] = []

    def step() -> None:
        nonlocal order
        if len(order) < 32:
            order = list(range(len(ids)))
            rng.shuffle(order)
        batch, order = order[:32], order[32:]
        x = torch.zeros(32, max(len(ids[i]) for i in batch), dtype=torch.long)
        for row, i in enumerate(batch):
            x[row, : len(ids[i])] = torch.tensor(ids[i])
        mask = torch.arange(x.shape[1]).unsqueeze(0) < torch.tensor([len(ids[i]) for i in batch]).unsqueeze(1)
        loss = nn.functional.cross_entropy(model(x, mask), torch.tensor([labels[i] for i in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * 32 / (time.perf_counter() - t)


def charrnn_examples_per_sec(data: Path, run: Path, warmup: int, steps: int, threads: int) -> tuple[float, float]:
    """(loop rate over the progress windows after ``warmup`` steps, summary's train_examples_per_sec)."""
    out, _ = charrnn("train", "--task", "classify", str(data / "train.tsv"), "--val-file", str(data / "dev.tsv"),
                     "--out", str(run), "--max-steps", str(warmup + steps), "--eval-interval", "100000",
                     "--log-interval", str(warmup), "--threads", str(threads), "--json", "--quiet", *SAME_MODEL)
    summary = json.loads(out)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    train = [r for r in records if r.get("event") == "train"]
    items = seconds = 0.0
    for prev, cur in itertools.pairwise(train):
        if prev["step"] >= warmup:
            dt = cur["time"] - prev["time"]
            items, seconds = items + cur["examples_per_sec"] * dt, seconds + dt
    loop = items / seconds if seconds else float("nan")
    return loop, summary["train_examples_per_sec"]


def throughput(data: Path, tmp: Path, warmup: int, steps: int, rounds: int, threads: int) -> dict:
    sentences, labels = read_tsv(data / "train.tsv")
    plain, loop, summ = [], [], []
    for r in range(rounds):
        plain.append(plain_examples_per_sec(sentences, labels, warmup, steps, seed=r))
        lp, sm = charrnn_examples_per_sec(data, tmp / f"throughput-{r}", warmup, steps, threads)
        loop.append(lp)
        summ.append(sm)
        print(f"throughput round {r + 1}/{rounds}: plain {plain[-1]:,.0f}, charrnn loop {lp:,.0f}, "
              f"charrnn summary {sm:,.0f} examples/s", file=sys.stderr, flush=True)
    return {"plain": plain, "charrnn_loop": loop, "charrnn_summary": summ,
            "ratio_loop": statistics.median(a / b for a, b in zip(loop, plain)),
            "ratio_summary": statistics.median(a / b for a, b in zip(summ, plain))}


# ----------------------------------------------------------------------------- 6. predict

def predict_speed(run: Path, data: Path, tmp: Path) -> dict:
    sentences, _ = read_tsv(data / "test.tsv")
    text, empty = tmp / "test_sentences.txt", tmp / "empty.txt"
    text.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    empty.write_text("", encoding="utf-8")
    _, startup = charrnn("predict", str(run), str(empty))
    out = {"lines": len(sentences), "startup_wall": startup}
    for bs in (1, 256):
        stdout, wall = charrnn("predict", str(run), str(text), "--batch-size", str(bs))
        got = len(stdout.splitlines())
        if got != len(sentences):
            print(f"warning: predict --batch-size {bs} printed {got} lines for {len(sentences)}", file=sys.stderr)
        out[f"wall_bs{bs}"] = wall
        out[f"lines_per_sec_bs{bs}"] = len(sentences) / max(wall - startup, 1e-9)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=None,
                    help="charrnn training time budget in seconds (default: none, the defaults' own limit)")
    ap.add_argument("--best-args", default="", help='extra train flags for the "best settings" run ("" = skip); '
                    'write --best-args=--FLAG for a single flag without spaces')
    ap.add_argument("--steps", type=int, default=300, help="timed steps per throughput run (after 10 warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="throughput rounds (plain, charrnn alternating)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed ones")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for every run")
    ap.add_argument("--data", type=Path, default=None, help="directory with train.tsv, dev.tsv, test.tsv")
    for part in ("reference", "default", "throughput", "predict"):
        ap.add_argument(f"--skip-{part}", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (runs, metrics)")
    ap.add_argument("--quick", action="store_true", help="smoke test: budget 20 s, 20 steps after 5 warm-up, "
                    "1 throughput round, reference on 5,000 training lines")
    args = ap.parse_args()
    if args.quick:
        args.budget, args.steps, args.rounds, args.warmup = 20.0, 20, 1, 5
    data = args.data or default_data_dir()
    if not all((data / f).is_file() for f in ("train.tsv", "dev.tsv", "test.tsv")):
        raise SystemExit(f"{data}: needs train.tsv, dev.tsv and test.tsv of SST-2 (give --data DIR)")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-sst2-"))
    print(f"machine: {machine()}; {args.threads} threads", flush=True)
    budget = f"budget {args.budget:g} s" if args.budget else "no time budget (the defaults' limit)"
    print(f"data: {data}; work dir: {tmp}; {budget}" + (" (--quick)" if args.quick else ""), flush=True)
    results: dict = {"benchmark": "sst2_classify", "budget": args.budget, "threads": args.threads, "quick": args.quick}

    ref = None
    if not args.skip_reference:
        ref = results["reference"] = reference(data, 5000 if args.quick else None)
        print(f"\nreference (TF-IDF word 1-2 + char_wb 2-5, LogisticRegression C={ref['C']:g} chosen on dev; "
              f"{ref['train_lines']:,} training lines, {ref['features']:,} features): test accuracy "
              f"{ref['test_accuracy']:.4f}, dev {ref['dev_accuracy']:.4f}; {ref['seconds']:.1f} s fit + predict "
              f"({ref['search_seconds']:.1f} s with the search over C)", flush=True)

    runs = []
    if not args.skip_default:
        runs.append(("defaults", tmp / "default", []))
    if args.best_args:
        runs.append(("best settings", tmp / "best", shlex.split(args.best_args)))
    for name, run, extra in runs:
        r = results[name] = charrnn_run(data, run, args.budget, args.threads, extra)
        print(f"\ncharrnn {name}{' (' + r['extra'] + ')' if extra else ''}: test accuracy {r['test_accuracy']:.4f}, "
              f"macro-F1 {r['test_macro_f1']:.4f}; train wall {r['train_wall']:.1f} s; summary: val_accuracy "
              f"{num(r['val_accuracy'], '.4f')}, steps {num(r['steps'], ',')}, epochs {num(r['epochs'], '.3f')}, "
              f"examples_per_sec {num(r['examples_per_sec'], ',.1f')}", flush=True)
        print(verdict(r, ref), flush=True)

    if not args.skip_throughput:
        t = results["throughput"] = throughput(data, tmp, args.warmup, args.steps, args.rounds, args.threads)
        med = {k: statistics.median(t[k]) for k in ("plain", "charrnn_loop", "charrnn_summary")}
        print(f"\ntraining throughput, same model (emb 128, 1x256 bi-LSTM, max pool, dropout 0.3, batch 32, char ids), "
              f"{args.warmup} warm-up + {args.steps} timed steps, {args.rounds} interleaved round(s), medians:", flush=True)
        print(f"  plain PyTorch loop (padded, no bucketing/packing): {med['plain']:,.0f} examples/s")
        print(f"  charrnn loop (progress windows after step {args.warmup}): {med['charrnn_loop']:,.0f} examples/s; "
              f"ratio charrnn / plain {t['ratio_loop']:.2f}x (target >= 1.0x: {'met' if t['ratio_loop'] >= 1 else 'not met'})")
        print(f"  charrnn summary train_examples_per_sec (all steps + final validation on dev + save): "
              f"{med['charrnn_summary']:,.0f} examples/s; ratio {t['ratio_summary']:.2f}x", flush=True)

    if not args.skip_predict:
        run = next((r for _, r, _ in runs), None)
        if run is None:
            print("\nprediction speed: skipped (no trained run: --skip-default and no --best-args)")
        else:
            p = results["predict"] = predict_speed(run, data, tmp)
            print(f"\nprediction speed ({p['lines']} test sentences, {run.name} run; start-up = predict on an empty "
                  f"file, {p['startup_wall']:.2f} s): --batch-size 1: {p['lines_per_sec_bs1']:,.0f} lines/s "
                  f"(wall {p['wall_bs1']:.2f} s); --batch-size 256: {p['lines_per_sec_bs256']:,.0f} lines/s "
                  f"(wall {p['wall_bs256']:.2f} s)", flush=True)
    print("\n" + json.dumps(results))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
