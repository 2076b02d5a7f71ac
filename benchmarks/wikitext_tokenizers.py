"""Char, BPE and unigram models on WikiText-2, side by side: bits per character of the
test text after the same training time.

    python benchmarks/wikitext_tokenizers.py [--budget 300] [--data DIR] [--runs char,bpe:1000,...]

WikiText-2 as PyTorch's word_language_model example ships it (space-separated tokens,
rare words as <unk>): each model trains with `charrnn train valid.txt --tokenizer KIND
--vocab-size N --time-budget BUDGET` (the first 90% of valid.txt is the training split,
on which the tokenizer is trained too; the last 10% is the validation split that picks
the best checkpoint) and is scored with `charrnn eval perplexity` on test.txt: test bits
per character (the total loss over the characters the scored tokens cover) and test
perplexity per token (not comparable across tokenizers; bpc is). The time budget counts
everything the command does, tokenizer training included.

Every run uses charrnn's default model and optimisation (2x512 LSTM, embedding 64,
batch 32, bptt 128, AdamW 3e-3 with warmup and cosine decay); only the tokenizer changes,
and with it the size of the embedding and output layers. bptt counts tokens, not
characters: a 128-token window holds about 128 characters for the char model but
128 x (characters per token) for a subword model, so subword models also see longer
contexts per window and more text per step. tokens/s is the training loop's speed;
chars/s is tokens/s times the tokenizer's characters per token on the training split.

Vocabulary sizes: 1000 and 4000 for both bpe and unigram, a small vocabulary (about 2.4
characters per token here, output layer of 0.5 M weights) and a large one (about 3.3
characters per token, 2 M weights), on either side of the 2048 default.

The data directory defaults to $CHARRNN_CORPORA/wikitext-2, else ../shared/corpora/wikitext-2
next to this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

from charrnn.text.io import read_text
from charrnn.text.streams import split_text

RUNS = ["char", "bpe:1000", "bpe:4000", "unigram:1000", "unigram:4000"]


def default_data_dir() -> Path:
    env = os.environ.get("CHARRNN_CORPORA")
    if env:
        return Path(env) / "wikitext-2"
    return Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "wikitext-2"


def one_run(spec: str, data: Path, budget: float, threads: int, tmp: Path, dynamic: bool = False) -> dict:
    """Train one model within ``budget`` seconds and score it on test.txt."""
    import charrnn

    kind, _, size = spec.partition(":")
    out = tmp / spec.replace(":", "-")
    cmd = [sys.executable, "-m", "charrnn", "train", str(data / "valid.txt"), "--tokenizer", kind,
           "--time-budget", str(budget), "--threads", str(threads), "--out", str(out), "--json", "--quiet"]
    if size:
        cmd += ["--vocab-size", size]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{spec}: {proc.stderr}")
    summary = json.loads(proc.stdout)
    # 16 warmed-up parallel streams (the default: each reads the 256 tokens before its part
    # first): within 1e-6 bpc of one stream carried through the whole text
    # (eval_throughput.py), 3x faster. Dynamic evaluation (--dynamic) reads one stream.
    ev = subprocess.run([sys.executable, "-m", "charrnn", "eval", "perplexity", str(out), str(data / "test.txt"), "--json"]
                        + (["--dynamic"] if dynamic else []),
                        capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if ev.returncode:
        raise SystemExit(f"{spec}: {ev.stderr}")
    test = json.loads(ev.stdout)
    tok = charrnn.load(out, device="cpu").tokenizer
    train_text, _ = split_text(read_text(data / "valid.txt"), 0.1)
    chars_per_token = len(train_text) / tok.encode(train_text).numel()
    return {"run": spec, "kind": kind, "vocab_size": tok.vocab_size, "params": summary["params"],
            "steps": summary["steps"], "tokens_per_sec": summary["train_tokens_per_sec"],
            "chars_per_token": chars_per_token, "chars_per_sec": summary["train_tokens_per_sec"] * chars_per_token,
            "test_bpc": test["bpc"], "test_token_perplexity": test["perplexity"], "test_tokens": test["tokens"],
            "test_chars": test["chars"], "seconds": summary["elapsed"], "wall": wall,
            "test_bpc_dynamic": (test.get("dynamic") or {}).get("bpc"),
            "dynamic_seconds_per_100k_chars": (test.get("dynamic") or {}).get("seconds_per_100k_chars")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of training per model")
    ap.add_argument("--data", type=Path, default=None, help="directory with valid.txt and test.txt")
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated KIND or KIND:VOCAB_SIZE")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--dynamic", action="store_true", help="also score test.txt with dynamic evaluation")
    args = ap.parse_args()

    data = args.data or default_data_dir()
    if not (data / "valid.txt").is_file() or not (data / "test.txt").is_file():
        raise SystemExit(f"{data}: needs valid.txt and test.txt of WikiText-2 (give --data DIR)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.runs.split(","):
            results.append(one_run(spec.strip(), data, args.budget, args.threads, Path(tmp), args.dynamic))
            print(json.dumps(results[-1]), file=sys.stderr)

    rows = ["| tokenizer | vocab | params | steps | tokens/s | chars/s | chars/token | test bpc | test ppl (per token) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['kind']} | {r['vocab_size']:,} | {r['params'] / 1e6:.2f} M | {r['steps']:,} | "
                    f"{r['tokens_per_sec']:,.0f} | {r['chars_per_sec']:,.0f} | {r['chars_per_token']:.2f} | "
                    f"**{r['test_bpc']:.4f}** | {r['test_token_perplexity']:.2f} |")
    if args.dynamic:
        rows.append("\ndynamic evaluation (`eval perplexity --dynamic`, default settings), test bpc: " + "; ".join(
            f"{r['kind']} **{r['test_bpc_dynamic']:.4f}** ({(r['test_bpc_dynamic'] / r['test_bpc'] - 1) * 100:+.2f}%, "
            f"{r['dynamic_seconds_per_100k_chars']:.1f} s per 100k chars)" for r in results))
    table = "\n".join(rows)
    cmd = (f"python benchmarks/wikitext_tokenizers.py --budget {args.budget:g} --runs {args.runs} --threads {args.threads}"
           + (" --dynamic" if args.dynamic else ""))
    data_out = {"benchmark": "wikitext_tokenizers", "budget": args.budget, "threads": args.threads, "results": results}
    if args.no_record:
        print(table)
        print(json.dumps(data_out))
    else:
        record(f"WikiText-2: char, bpe and unigram models, {args.budget:g} s each", cmd, table, data_out)


if __name__ == "__main__":
    main()
