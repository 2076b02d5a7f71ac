"""Which block the scan cells get: validation bpc at a time budget of mingru/minlstm
variants, each a registered cell (charrnn.register_cell) with other block arguments,
trained one after the other by ``charrnn.train`` at the size charrnn's chooser picks.

    python benchmarks/scan_block.py --budget 120 [--options '{"ar": 0, "tar": 0}']
        lstm mingru mingru:ffn=0 mingru:ffn=1 minlstm

A contender is a cell name, or ``BASE:ffn=M`` for BASE's block with a feed-forward layer
M hidden sizes wide (0: none). ``--options`` are more ``charrnn.train`` keyword options for
every contender. Prints one JSON line per contender: best val bpc, steps, tokens/s, size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_path  # noqa: E402

import charrnn  # noqa: E402
from charrnn.checkpoint import read_metrics  # noqa: E402
from charrnn.models.cells import CELLS, register_cell  # noqa: E402


def cell_of(spec: str) -> str:
    if ":" not in spec:
        return spec
    base, _, arg = spec.partition(":")
    mult = int(arg.removeprefix("ffn="))
    name = f"{base}_ffn{mult}"
    if name not in CELLS:
        kind = CELLS[base]
        register_cell(type(kind)(name, kind.module, kind.gates, kind.paired, kind.step, kind.kernel,
                                 kwargs={"ffn_mult": mult}, parallel=True,
                                 count=lambda i, h, n, v=kind.module(1, 1).variant, m=mult:
                                 kind.module.count(i, h, n, v, m)))
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("contenders", nargs="+")
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--options", default="{}", help="more charrnn.train options (JSON)")
    args = ap.parse_args()
    extra = json.loads(args.options)
    path = corpus_path(args.corpus)
    for spec in args.contenders:
        cell = cell_of(spec)
        with tempfile.TemporaryDirectory(prefix="charrnn-block-") as tmp:
            t = time.perf_counter()
            lm = charrnn.train(path, out=f"{tmp}/run", cell=cell, time_budget=args.budget, threads=args.threads,
                               progress=False, **extra)
            evals = [r for r in read_metrics(Path(tmp) / "run" / "metrics.jsonl") if r["event"] == "eval"]
        c = lm.model.config
        print(json.dumps({"contender": spec, "options": extra, "budget": args.budget,
                          "best_val_bpc": min(r["val_bpc"] for r in evals), "steps": evals[-1]["step"],
                          "tokens_per_sec": evals[-1]["tokens_per_sec"], "size": f"{c.layers}x{c.hidden_size}",
                          "params": lm.model.num_parameters(), "wall": time.perf_counter() - t}), flush=True)


if __name__ == "__main__":
    main()
