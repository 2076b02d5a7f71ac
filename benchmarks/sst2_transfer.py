"""SST-2 sentiment within a CPU budget: charrnn's one-command transfer path (``--pretrain``),
or any other options, over several seeds and budgets, beside the TF-IDF logistic
regression measured in the same invocation (issue 37).

    python benchmarks/sst2_transfer.py [--budgets 450] [--seeds 1 2 3] [--threads 2]
        [--train-args "--pretrain 150"] [--data DIR] [--skip-baseline] [--write]

Each run: ``charrnn train --task classify DIR/train.tsv --val-file DIR/dev.tsv
--time-budget B --threads T --seed S ARGS`` (B covers the pretraining stage too), then
``charrnn eval accuracy RUN DIR/test.tsv`` (the 872 labelled GLUE dev sentences, scored
once). CPU seconds: the training process's user + system time (os.wait4), start-up,
pretraining and the final evaluation included; "15 CPU minutes" is 900 of them, a
450 s budget with 2 threads. The baseline is sst2_classify.py's: word 1-2-gram + char_wb
2-5-gram TF-IDF, logistic regression with C chosen on dev.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, record  # noqa: E402
from conditional_words import charrnn, run_child  # noqa: E402
from sst2_classify import default_data_dir, reference  # noqa: E402


def run_charrnn(data: Path, root: Path, budget: float, seed: int, threads: int, extra: list[str]) -> dict:
    run = root / f"run-{budget:g}-{seed}"
    out, wall, cpu = run_child(charrnn("train", "--task", "classify", data / "train.tsv", "--val-file",
                                       data / "dev.tsv", "--time-budget", budget, "--threads", threads, "--seed", seed,
                                       "--out", run, "--json", "--quiet", *extra), threads)
    s = json.loads(out)
    ev, _, _ = run_child(charrnn("eval", "accuracy", run, data / "test.tsv", "--json", "--threads", threads), threads)
    pre = s.get("pretrain") or {}
    return {"seed": seed, "budget": budget, "test": json.loads(ev)["accuracy"], "dev": s.get("val_accuracy"),
            "train_wall_s": wall, "train_cpu_s": cpu, "steps": s.get("steps"), "epochs": s.get("epochs"),
            "stopped_early": s.get("stopped_early"), "averaged": s.get("averaged"), "params": s.get("params"),
            "pretrain_steps": pre.get("steps"), "pretrain_val_bpc": pre.get("val_bpc")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[450.0], help="--time-budget of each run, seconds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-args", default="--pretrain 150", help="options for charrnn train")
    ap.add_argument("--data", type=Path, default=default_data_dir())
    ap.add_argument("--skip-baseline", action="store_true", help="charrnn only (trying options); implies no --write")
    ap.add_argument("--write", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()
    base = None if args.skip_baseline else reference(args.data, None)
    if base:
        print(f"baseline: test {base['test_accuracy']:.4f} (C {base['C']})", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            for seed in args.seeds:
                runs.append(run_charrnn(args.data, Path(tmp), budget, seed, args.threads, shlex.split(args.train_args)))
                r = runs[-1]
                print(f"charrnn {budget:g} s seed {seed}: test {r['test']:.4f} (dev {r['dev']}), "
                      f"{r['train_cpu_s']:.0f} CPU s {json.dumps(r)}", file=sys.stderr)
    rows = ["| model | budget | seed | test accuracy | dev accuracy | pretraining | task steps (epochs) | CPU s |",
            "|---|---|---|---|---|---|---|---|"]
    if base:
        rows.append(f"| TF-IDF word 1-2 + char 2-5-grams, logistic regression (C {base['C']:g} on dev) | "
                    f"{base['search_seconds']:.0f} s, every C | | {base['test_accuracy']:.4f} | "
                    f"{base['dev_accuracy']:.4f} | | | |")
    for r in runs:
        pre = (f"{r['pretrain_steps']:,} steps, val bpc {r['pretrain_val_bpc']:.3f}" if r["pretrain_steps"]
               and r["pretrain_val_bpc"] is not None else "-")
        notes = (", stopped early" if r["stopped_early"] else "") + (
            f", averaged {r['averaged']['evaluations']} (kept)" if r["averaged"] and r["averaged"]["kept"] else "")
        rows.append(f"| charrnn `{args.train_args}` | {r['budget']:g} s | {r['seed']} | {r['test']:.4f} | "
                    f"{r['dev']:.4f} | {pre} | {r['steps']:,} ({r['epochs']:.1f}){notes} | {r['train_cpu_s']:.0f} |")
    rows.append("")
    for budget in args.budgets:
        tests = [r["test"] for r in runs if r["budget"] == budget]
        rows.append(f"- {budget:g} s: mean test {statistics.mean(tests):.4f} over {len(tests)} seeds, min "
                    f"{min(tests):.4f}, max {max(tests):.4f}")
    record(f"SST-2 within a CPU budget: `charrnn train --task classify {args.train_args}` ({args.threads} threads)",
           command_line(), "\n".join(rows), {"benchmark": "sst2_transfer", "baseline": base, "runs": runs,
                                             "train_args": args.train_args},
           write=args.write and base is not None)


if __name__ == "__main__":
    main()
