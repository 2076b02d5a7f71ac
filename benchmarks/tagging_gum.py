"""Part-of-speech tagging on UD English-GUM: charrnn's BiLSTM tagger against the
most-frequent-tag baseline, and bidirectional against unidirectional on the same budget.

    python benchmarks/tagging_gum.py [--epochs 20] [--threads 2] [--column UPOS]
        [--variants bi,uni] [--train-args "..."] [--data DIR] [--out DIR] [--no-record]

Data: DIR/en_gum-ud-dev.conllu (training: the issue's setting, UD's dev file) and
DIR/en_gum-ud-test.conllu (test). DIR defaults to $CHARRNN_CORPORA/ud-english-gum, else
../shared/corpora/ud-english-gum next to this checkout. charrnn validates (and picks its
best checkpoint) on its default held-out 10% of the training sentences, never on the test
file; the baseline is counted on the same 90% it trains on.

1. Baseline: each word's most frequent training tag (exact form, else lower-cased form);
   a word unseen in training gets the most frequent tag of its longest known suffix (up to
   5 characters, suffix counts from training words), else the most frequent tag overall.
2. charrnn variants, each `charrnn train --task tag TRAIN --epochs E --threads T` plus:
   bi: nothing (the defaults: bidirectional LSTM tagger with a character encoder),
   uni: --no-bidirectional, crf: --crf, nochar: --char-hidden-size 0;
   then `charrnn eval accuracy RUN TEST --json`.
"Unseen" is charrnn's definition for every row: the token's lower-cased form never occurs
in the training sentences. Wall times are measured around each training subprocess; CPU
minutes = wall minutes x threads (the training holds that many cores busy).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import record
from charrnn.config import TrainConfig
from charrnn.tasks.tag import split_sentences, word_key
from charrnn.text.tagged import Sentence, read_tagged

VARIANTS = {"bi": [], "uni": ["--no-bidirectional"], "crf": ["--crf"], "nochar": ["--char-hidden-size", "0"]}
SUFFIX = 5


def default_data_dir() -> Path:
    root = os.environ.get("CHARRNN_CORPORA")
    if root:
        return Path(root) / "ud-english-gum"
    return Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "ud-english-gum"


def baseline(train: list[Sentence], test: list[Sentence], seen: set[str]) -> dict:
    exact: dict[str, Counter] = defaultdict(Counter)
    lower: dict[str, Counter] = defaultdict(Counter)
    suffix: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for s in train:
        for tok, tag in zip(s.tokens, s.tags):
            exact[tok][tag] += 1
            lower[tok.lower()][tag] += 1
            overall[tag] += 1
            for k in range(1, SUFFIX + 1):
                if len(tok) > k:
                    suffix[tok[-k:].lower()][tag] += 1
    default = overall.most_common(1)[0][0]

    def guess(tok: str) -> str:
        for table, key in ((exact, tok), (lower, tok.lower())):
            if key in table:
                return table[key].most_common(1)[0][0]
        for k in range(min(SUFFIX, len(tok) - 1), 0, -1):
            if tok[-k:].lower() in suffix:
                return suffix[tok[-k:].lower()].most_common(1)[0][0]
        return default

    right = unseen = unseen_right = total = 0
    for s in test:
        for tok, tag in zip(s.tokens, s.tags):
            ok = guess(tok) == tag
            total += 1
            right += ok
            if word_key(tok) not in seen:
                unseen += 1
                unseen_right += ok
    return {"accuracy": right / total, "unseen_accuracy": unseen_right / unseen, "tokens": total, "unseen": unseen}


def run_charrnn(train: Path, test: Path, run: Path, args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "charrnn", "train", "--task", "tag", str(train), "-o", str(run), "--overwrite",
           "--quiet", "--json", *args]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"training failed: {shlex.join(cmd)}\n{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    ev = subprocess.run([sys.executable, "-m", "charrnn", "eval", "accuracy", str(run), str(test), "--json"],
                        capture_output=True, text=True, check=False)
    if ev.returncode:
        raise SystemExit(f"eval failed on {run}:\n{ev.stderr}")
    rep = json.loads(ev.stdout.strip().splitlines()[-1])
    return {"command": shlex.join(cmd[2:]), "train_seconds": wall, "steps": summary.get("steps"),
            "val_accuracy": summary.get("val_accuracy"), "accuracy": rep["accuracy"],
            "unseen_accuracy": rep["unseen_accuracy"], "sentence_accuracy": rep["sentence_accuracy"],
            "macro_f1": rep["macro_f1"], "unseen": rep["unseen_tokens"], "tokens": rep["tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--epochs", type=float, default=None, help="training epochs (default: the tagger's own default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--column", default="UPOS")
    ap.add_argument("--variants", default="bi,uni", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--train-args", default="", help="more options for every charrnn train command")
    ap.add_argument("--out", type=Path, default=Path("checkpoints/bench-tagging"))
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    a = ap.parse_args()
    data = a.data or default_data_dir()
    train_file, test_file = data / "en_gum-ud-dev.conllu", data / "en_gum-ud-test.conllu"
    variants = [v for v in a.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")

    # The same 90% that `charrnn train` trains on (its default --val-fraction and --seed).
    defaults = TrainConfig()
    train, _ = split_sentences(read_tagged(train_file, a.column), defaults.val_fraction, defaults.seed)
    test = read_tagged(test_file, a.column)
    seen = {word_key(t) for s in train for t in s.tokens}
    t = time.perf_counter()
    rows = {"baseline": {**baseline(train, test, seen), "train_seconds": time.perf_counter() - t}}
    extra = shlex.split(a.train_args) + ["--threads", str(a.threads), "--tag-column", a.column]
    if a.epochs is not None:
        extra += ["--epochs", f"{a.epochs:g}"]
    for v in variants:
        rows[v] = run_charrnn(train_file, test_file, a.out / v, VARIANTS[v] + extra)
        print(f"{v}: {json.dumps(rows[v])}", file=sys.stderr, flush=True)

    base = rows["baseline"]["accuracy"]
    lines = ["| model | test accuracy | unseen-word accuracy | vs baseline (points) | train min | CPU min |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        minutes = r["train_seconds"] / 60
        lines.append(f"| {name} | {100 * r['accuracy']:.2f} | {100 * r['unseen_accuracy']:.2f} | "
                     f"{100 * (r['accuracy'] - base):+.2f} | {minutes:.1f} | "
                     f"{minutes * (a.threads if name != 'baseline' else 1):.1f} |")
    lines.append(f"\n{rows['baseline']['tokens']:,} test tokens, {rows['baseline']['unseen']:,} unseen "
                 f"({100 * rows['baseline']['unseen'] / rows['baseline']['tokens']:.1f}%); "
                 f"{sum(len(s.tokens) for s in train):,} training tokens; column {a.column}.")
    if "bi" in rows:
        gap = 100 * (rows["bi"]["accuracy"] - base)
        lines.append(f"Target (bidirectional >= baseline + 5 points): {'met' if gap >= 5 else 'MISSED'} ({gap:+.2f}).")
    table = "\n".join(lines)
    record("Tagging: UD English-GUM UPOS (train on dev, test on test)",
           "python benchmarks/tagging_gum.py " + shlex.join(sys.argv[1:]), table, rows, write=not a.no_record)


if __name__ == "__main__":
    main()
