"""Training throughput with one and several processes (`charrnn train` through its CLI).

    python benchmarks/distributed_throughput.py [--sizes 256 512] [--batch 32] [--rounds 2]
    python benchmarks/distributed_throughput.py --device cuda   # on a GPU machine

CPU arms (same global batch, same model, same corpus, same number of steps):

- ``1 proc x 2 threads``: plain `charrnn train --threads 2`: one process using both cores
  through torch's intra-op threads (the reference);
- ``1 proc x 1 thread``: `charrnn train --threads 1`;
- ``2 procs x 1 thread``: `charrnn train --nproc 2` (torchrun's launcher, DDP over gloo,
  OMP_NUM_THREADS=1 in each process): each process trains half of the streams.

CUDA arms: plain `charrnn train --device cuda` (the reference) against
`torchrun --standalone --nproc-per-node 1 -m charrnn train --device cuda`.

Throughput is charrnn's own: the tokens/s of each progress window in metrics.jsonl
(rank 0's clock, tokens of the whole global batch), after the warm-up windows; the
per-run figure is total tokens / total seconds of the timed windows. Arms run one after
another, in ``--rounds`` rounds whose order rotates; the table shows medians, and ratios
are medians of the per-round ratios against the reference arm of the same round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, corpus_path, record

from charrnn.checkpoint import read_metrics


def arms(device: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """(label, command prefix, environment additions); the first arm is the reference."""
    charrnn = [sys.executable, "-m", "charrnn", "train"]
    if device == "cuda":
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                    "-m", "charrnn", "train"]
        return [("plain charrnn train", charrnn, {}), ("torchrun, 1 process", torchrun, {})]
    return [
        ("1 proc x 2 threads", [*charrnn, "--threads", "2"], {}),
        ("1 proc x 1 thread", [*charrnn, "--threads", "1"], {}),
        ("2 procs x 1 thread", [*charrnn, "--nproc", "2"], {"OMP_NUM_THREADS": "1"}),
    ]


def run_arm(prefix: list[str], extra_env: dict[str, str], corpus: str, args, hidden: int) -> float:
    """Timed tokens/s of one training run."""
    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="charrnn-dist-bench-") as tmp:
        out = Path(tmp) / "run"
        cmd = [*prefix, corpus, "--out", str(out), "--cell", args.cell, "--layers", str(args.layers),
               "--hidden-size", str(hidden), "--batch-size", str(args.batch), "--bptt", str(args.bptt),
               "--max-steps", str(steps), "--log-interval", str(args.log_interval), "--eval-interval", str(10**9),
               "--val-max-chars", "4096", "--precision", args.precision, "--device", args.device, "--quiet"]
        env = {**os.environ, **extra_env}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
        windows = [r for r in read_metrics(out / "metrics.jsonl") if r.get("event") == "train"]
    tokens = seconds = 0.0
    previous = 0
    for r in windows:
        if previous >= args.warmup:
            n = (r["step"] - previous) * args.batch * args.bptt  # full windows: the corpus is far longer
            tokens += n
            seconds += n / r["tokens_per_sec"]
        previous = r["step"]
    return tokens / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512], help="hidden sizes")
    ap.add_argument("--batch", type=int, default=32, help="global batch (charrnn's default)")
    ap.add_argument("--bptt", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--log-interval", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.warmup % args.log_interval or args.steps % args.log_interval:
        ap.error("--warmup and --steps must be multiples of --log-interval")
    corpus = corpus_path(args.corpus)
    arm_list = arms(args.device)
    results = []
    for hidden in args.sizes:
        per_round: dict[str, list[float]] = {label: [] for label, _, _ in arm_list}
        for r in range(args.rounds):
            order = arm_list[r % len(arm_list):] + arm_list[: r % len(arm_list)]
            for label, prefix, env in order:
                per_round[label].append(run_arm(prefix, env, corpus, args, hidden))
            print(f"{args.cell} {args.layers}x{hidden} round {r + 1}/{args.rounds}: "
                  + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in per_round.items()), file=sys.stderr, flush=True)
        ref = arm_list[0][0]
        results.append({
            "hidden": hidden,
            "chars_per_sec": {k: statistics.median(v) for k, v in per_round.items()},
            "rounds": per_round,
            "ratio": {k: statistics.median(a / b for a, b in zip(v, per_round[ref])) for k, v in per_round.items()},
        })
    labels = [label for label, _, _ in arm_list]
    head = "| model | " + " | ".join(f"{k} chars/s (ratio)" for k in labels) + " |"
    rows = [head, "|" + "---|" * (len(labels) + 1)]
    for res in results:
        cells = [f"{res['chars_per_sec'][k]:,.0f} ({res['ratio'][k]:.2f}x)" for k in labels]
        rows.append(f"| {args.cell.upper()} {args.layers}x{res['hidden']} | " + " | ".join(cells) + " |")
    notes = (f"\n\nGlobal batch {args.batch}, bptt {args.bptt}, precision {args.precision}, {args.corpus}; "
             f"{args.warmup} warm-up + {args.steps} timed steps per run, median of {args.rounds} rotated rounds; "
             f"ratios against '{labels[0]}' in the same round.")
    title = f"Distributed training throughput ({args.device}): " + " vs ".join(labels)
    data = {"benchmark": "distributed_throughput", "device": args.device, "cell": args.cell, "layers": args.layers,
            "batch": args.batch, "bptt": args.bptt, "precision": args.precision, "warmup": args.warmup,
            "steps": args.steps, "rounds": args.rounds, "results": results}
    record(title, command_line(), "\n".join(rows) + notes, data, write=not args.no_record)


if __name__ == "__main__":
    main()
