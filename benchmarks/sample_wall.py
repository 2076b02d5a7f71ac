"""Wall time of a short ``charrnn sample RUN -n 100`` (start-up included), before and after.

    python benchmarks/sample_wall.py RUN [--before TREE] [--rounds 7] [-n 100] [--threads 2]

Runs the command as a user does, ``python -m charrnn sample RUN -n 100 --seed 1`` with
stdout to a pipe, in fresh processes: importing torch and charrnn, loading the
checkpoint, reading the prime, generating. With ``--before TREE`` (another checkout of
charrnn, e.g. ``git worktree add /tmp/before <commit>``) the same command runs from that
tree too, alternating round by round with this one, so both see the same minute of a
shared machine. Beside it, the part after the imports (which are most of it and vary by
a few hundred milliseconds run to run): loading the run and generating, timed inside a
fresh process. Prints the median and range of each, and checks that both printed the
same text (the same seed and model: the same sample).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, record  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def once(tree: Path, run: str, n: int, threads: int) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "charrnn", "sample", run, "-n", str(n), "--seed", "1"],
                          capture_output=True, text=True, env=env, cwd=tree)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {proc.stderr.strip()}")
    return wall, proc.stdout


INPROC = ("import sys, time, torch; import charrnn; from charrnn.config import SampleConfig; "
          "t = time.perf_counter(); lm = charrnn.load(sys.argv[1], device='cpu'); "
          "text = ''.join(lm.stream('', SampleConfig(length=int(sys.argv[2]), seed=1))); "
          "print(time.perf_counter() - t)")


def inproc(tree: Path, run: str, n: int, threads: int) -> float:
    """Seconds from the imports' end to the last token: loading the run, reading the
    prime, making the step, generating."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", INPROC, run, str(n)], capture_output=True, text=True, env=env,
                          cwd=tree, check=True)
    return float(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--before", type=Path, help="another checkout to compare with")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()
    trees = {"after (this tree)": HERE}
    if args.before:
        trees = {"before": args.before.resolve(), **trees}
    walls: dict[str, list[float]] = {k: [] for k in trees}
    inside: dict[str, list[float]] = {k: [] for k in trees}
    texts: dict[str, str] = {}
    once(HERE, args.run, args.n, args.threads)  # warm the file cache
    for _ in range(args.rounds):
        for name, tree in trees.items():
            wall, texts[name] = once(tree, args.run, args.n, args.threads)
            walls[name].append(wall)
            inside[name].append(inproc(tree, args.run, args.n, args.threads))
    rows = ["| tree | wall time, median | min-max | load + generate in the process (no imports), median |",
            "|---|---|---|---|"]
    for name, w in walls.items():
        rows.append(f"| {name} | {statistics.median(w):.2f} s | {min(w):.2f}-{max(w):.2f} s | "
                    f"{1000 * statistics.median(inside[name]):.0f} ms |")
    same = len(set(texts.values())) == 1
    table = "\n".join(rows + ["", f"same text from every tree: {'yes' if same else 'NO'}"])
    record(f"`charrnn sample RUN -n {args.n}`: wall time with start-up", command_line(), table,
           {"benchmark": "sample_wall", "n": args.n, "threads": args.threads,
            "median_s": {k: statistics.median(w) for k, w in walls.items()},
            "inproc_median_s": {k: statistics.median(w) for k, w in inside.items()}, "same_text": same}, write=args.write)


if __name__ == "__main__":
    main()
