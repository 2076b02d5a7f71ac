"""Dynamic evaluation settings: the measurement behind `eval perplexity --dynamic`'s defaults.

    python benchmarks/dynamic_eval.py RUN [--corpus tinyshakespeare] [--tune-chars 30000]
        [--grid rms:1e-4:0:50,rms:3e-4:0:50,...]

Scores the validation split of the corpus (its last 10%, as training splits it) with a
trained language model, statically and with each dynamic setting of the grid
(rule:lr:decay:segment). The settings are compared on the first ``--tune-chars``
characters of the split only; the best one is then scored on the whole split, so the
reported gain is not only the gain on the text the choice was made on (the tuning part is
inside the whole split: the figure on the remainder alone is printed too).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402

import charrnn  # noqa: E402
from charrnn.tasks.dynamic import DynamicConfig  # noqa: E402
from charrnn.text.corpora import resolve_corpus  # noqa: E402
from charrnn.text.io import read_text  # noqa: E402
from charrnn.text.streams import split_text  # noqa: E402

GRID = ("rms:1e-4:0:50,rms:3e-4:0:50,rms:1e-3:0:50,rms:3e-4:0.001:50,rms:3e-4:0:20,rms:3e-4:0:100,"
        "sgd:3e-3:0:50,sgd:1e-2:0:50,sgd:3e-2:0:50")


def parse(spec: str) -> DynamicConfig:
    rule, lr, decay, segment = spec.split(":")
    return DynamicConfig(lr=float(lr), decay=float(decay), segment=int(segment), rule=rule)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--tune-chars", type=int, default=30_000)
    ap.add_argument("--grid", default=GRID)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = charrnn.load(args.run, device="cpu")
    _, val = split_text(read_text(resolve_corpus(args.corpus)), 0.1)
    tune, rest = val[: args.tune_chars], val[args.tune_chars :]
    static_tune = lm.evaluate(tune, streams=1)
    rows = [f"tuning part: the first {len(tune):,} characters of the validation split; static bpc "
            f"{static_tune.bpc:.4f}", "", "| rule | lr | decay | segment | bpc | change | s per 100k chars |",
            "|---|---|---|---|---|---|---|"]
    tried = []
    for spec in args.grid.split(","):
        cfg = parse(spec)
        t = time.perf_counter()
        res = lm.evaluate_dynamic(tune, cfg)
        secs = time.perf_counter() - t
        tried.append((res.bpc, spec, cfg))
        rows.append(f"| {cfg.rule} | {cfg.lr:g} | {cfg.decay:g} | {cfg.segment} | {res.bpc:.4f} | "
                    f"{(res.bpc / static_tune.bpc - 1) * 100:+.2f}% | {secs / res.chars * 1e5:.1f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    best_bpc, best_spec, best = min(tried, key=lambda r: r[0])

    static = lm.evaluate(val, streams=1)
    t = time.perf_counter()
    dyn = lm.evaluate_dynamic(val, best)
    secs = time.perf_counter() - t
    static_rest, dyn_rest = lm.evaluate(rest, streams=1), lm.evaluate_dynamic(rest, best)
    rows += ["", f"best on the tuning part: `{best_spec}`. Whole validation split ({len(val):,} characters): static "
             f"**{static.bpc:.4f}**, dynamic **{dyn.bpc:.4f}** ({(dyn.bpc / static.bpc - 1) * 100:+.2f}%), "
             f"{secs / dyn.chars * 1e5:.1f} s per 100k characters; the remainder after the tuning part alone: "
             f"{static_rest.bpc:.4f} -> {dyn_rest.bpc:.4f} ({(dyn_rest.bpc / static_rest.bpc - 1) * 100:+.2f}%)"]
    table = "\n".join(rows)
    info = lm.info()
    cmd = f"python benchmarks/dynamic_eval.py {args.run} --corpus {args.corpus} --tune-chars {args.tune_chars}"
    data = {"benchmark": "dynamic_eval", "run": args.run, "model": info.get("model_config"),
            "static": static.bpc, "dynamic": dyn.bpc, "best": best_spec, "seconds_per_100k": secs / dyn.chars * 1e5,
            "grid": [{"spec": s, "bpc": b} for b, s, _ in tried]}
    if args.no_record:
        print(table)
    else:
        record(f"Dynamic evaluation settings on {args.corpus}", cmd, table, data)


if __name__ == "__main__":
    main()
