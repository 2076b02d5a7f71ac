"""Corpus scale: preparing a large corpus, and training memory against a small one.

    python benchmarks/corpus_scale.py [--mb 200] [--steps 100] [--workdir DIR]

1. Builds a corpus of ``--mb`` megabytes by concatenating the text on this machine
   (tinyshakespeare and WikiText-2, repeated; cut at a character boundary) and a 1 MB one
   (its first megabyte).
2. Preparation: ``charrnn.prepare.prepare_corpus`` on the big corpus with an empty id
   cache (validation part capped at 1M characters, as `charrnn train` does), in a fresh
   process: wall time and peak RSS (the target is a peak under twice
   the corpus bytes). For reference, the peak RSS of a process that only imports torch and
   charrnn is measured too: that much of any charrnn process is the interpreter and torch.
3. Training memory: `charrnn train` for ``--steps`` steps (default model, batch 32, bptt
   128) on each corpus, with a small separate validation file so that both runs validate
   on the same text, the id cache already filled (what every run after the first sees):
   peak RSS of each process (the target is the big one within 10% of the small one).

Peak RSS is the child's ru_maxrss; each measurement runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, corpus_path, record


def build(path: Path, size: int, sources: list[str]) -> None:
    """Concatenate ``sources`` over and over up to ``size`` bytes, ending on a whole character."""
    blob = b"".join(Path(s).read_bytes() for s in sources)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            piece = blob[: size - written]
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as e:  # cut inside a character: end before it
                piece = piece[: e.start]
                size = written + len(piece)
            f.write(piece)
            written += len(piece)


def peak_of(argv: list[str], env: dict) -> tuple[float, float, str]:
    """Wall time and peak RSS (MiB) of one command, measured by a small wrapper process."""
    code = (
        "import resource, subprocess, sys, time, json\n"
        f"t = time.perf_counter(); p = subprocess.run({argv!r}, capture_output=True, text=True)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([time.perf_counter() - t, r / 1024, p.returncode, p.stdout[-2000:], p.stderr[-2000:]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    wall, peak, rc, stdout, stderr = json.loads(out)
    if rc != 0:
        raise RuntimeError(f"{argv} failed: {stderr}")
    return wall, peak, stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=200.0, help="size of the big corpus in MB (10^6 bytes)")
    ap.add_argument("--steps", type=int, default=100, help="training steps for the memory comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="where to build the corpora (default: a temp dir)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    sources = [corpus_path("tinyshakespeare"), corpus_path("wikitext-2-valid"), corpus_path("wikitext-2-test")]
    tmp = tempfile.TemporaryDirectory(prefix="charrnn-scale-")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    big, small, val = work / "big.txt", work / "small.txt", work / "val.txt"
    build(big, int(args.mb * 1e6), sources)
    build(small, 1_000_000, sources)
    val.write_bytes(Path(sources[0]).read_bytes()[-50_000:])
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "OMP_NUM_THREADS": str(args.threads)}
    corpus_bytes = big.stat().st_size

    # 2. Preparation with an empty cache, and the bare import for reference.
    _, base_rss, _ = peak_of([sys.executable, "-c", "import torch, charrnn.text.prepare, charrnn.cli"], env)
    prep_code = (
        "import json, time\nfrom charrnn.text.prepare import prepare_corpus\n"
        f"t = time.perf_counter(); c = prepare_corpus([{str(big)!r}], val_max_chars=1_000_000)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'train_tokens': c.train.numel(), "
        "'val_tokens': c.val.numel(), 'cached': c.cached}))\n"
    )
    prep_wall, prep_rss, out = peak_of([sys.executable, "-c", prep_code], env)
    prep = json.loads(out.strip().splitlines()[-1])
    cached_wall, cached_rss, out = peak_of([sys.executable, "-c", prep_code], env)
    cached = json.loads(out.strip().splitlines()[-1])

    # 3. Training memory, cache filled, same validation file.
    train_rss = {}
    for name, path in (("1 MB", small), (f"{args.mb:g} MB", big)):
        argv = [sys.executable, "-m", "charrnn", "train", str(path), "--val-file", str(val), "--max-steps",
                str(args.steps), "--eval-interval", str(10**9), "--threads", str(args.threads), "--quiet",
                "--json", "--out", str(work / f"run-{path.stem}"), "--overwrite"]
        peak_of(argv, env)  # fills the id cache
        wall, rss, out = peak_of(argv, env)
        summary = json.loads(out.strip().splitlines()[-1])
        train_rss[name] = {"peak_rss_mb": rss, "wall_s": wall, "steps": summary["steps"],
                           "train_tokens": summary.get("train_tokens")}

    big_name = f"{args.mb:g} MB"
    ratio = train_rss[big_name]["peak_rss_mb"] / train_rss["1 MB"]["peak_rss_mb"]
    table = "\n".join([
        "| measurement | value |",
        "|---|---|",
        f"| corpus | {corpus_bytes / 1e6:,.1f} MB, {prep['train_tokens'] + prep['val_tokens']:,} tokens (char) |",
        f"| prepare, empty cache: wall | {prep['seconds']:.1f} s in the call, {prep_wall:.1f} s for the process |",
        f"| prepare, empty cache: peak RSS | {prep_rss:,.0f} MiB = **{prep_rss * 2**20 / corpus_bytes:.2f}x** the corpus bytes (target < 2x) |",
        f"| of which: a process that only imports torch + charrnn | {base_rss:,.0f} MiB |",
        f"| prepare, cache filled: wall / peak RSS | {cached['seconds']:.1f} s / {cached_rss:,.0f} MiB |",
        f"| train {args.steps} steps, 1 MB corpus: peak RSS | {train_rss['1 MB']['peak_rss_mb']:,.0f} MiB |",
        f"| train {args.steps} steps, {big_name} corpus: peak RSS | {train_rss[big_name]['peak_rss_mb']:,.0f} MiB |",
        f"| ratio big / small | **{ratio:.3f}** (target <= 1.10) |",
    ])
    data = {"corpus_bytes": corpus_bytes, "prepare": {**prep, "process_wall_s": prep_wall, "peak_rss_mb": prep_rss},
            "prepare_cached": {**cached, "process_wall_s": cached_wall, "peak_rss_mb": cached_rss},
            "import_peak_rss_mb": base_rss, "train": train_rss, "train_rss_ratio": ratio}
    record(f"Corpus scale ({args.mb:g} MB)", command_line(), table, data, write=not args.no_record)
    tmp.cleanup()


if __name__ == "__main__":
    main()
