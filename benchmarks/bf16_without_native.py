"""What bf16 autocast costs on a CPU without native bf16 (no AVX512-BF16 or AMX): the
measurement behind ``--precision bf16`` running fp32 on such CPUs (runtime.py).

    python benchmarks/bf16_without_native.py [--hidden 256] [--threads 2]

For each cell, one training step (forward and backward, batch 32, 64 steps, 2 layers) in
fp32 and under bf16 autocast, with oneDNN on (torch's default) and off (torch's own
kernels), best of 3 after a warm-up. On an AVX2-only CPU oneDNN has no bf16 LSTM at all
('could not create a primitive descriptor'); the other paths run bf16 emulated.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402

from charrnn.runtime import cpu_has_fast_bf16  # noqa: E402


def step_seconds(rnn: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None, onednn: bool) -> float | None:
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn
    try:
        times = []
        for i in range(4):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out, _ = rnn(x)
            out.float().sum().backward()
            if i:
                times.append(time.perf_counter() - t)
        return min(times)
    except RuntimeError:
        return None
    finally:
        torch.backends.mkldnn.enabled = before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = ["| cell | kernels | fp32 s/step | bf16 s/step | bf16 / fp32 |", "|---|---|---|---|---|"]
    data = {"benchmark": "bf16_without_native", "native_bf16": cpu_has_fast_bf16(), "hidden": args.hidden, "results": []}
    for cell in ("lstm", "gru", "rnn"):
        rnn = getattr(torch.nn, cell.upper())(64, args.hidden, 2, batch_first=True)
        x = torch.randn(32, 64, 64)
        for onednn in (True, False):
            fp32 = step_seconds(rnn, x, None, onednn)
            bf16 = step_seconds(rnn, x, torch.bfloat16, onednn)
            ratio = f"{bf16 / fp32:.1f}x" if fp32 and bf16 else "-"
            rows.append(f"| {cell} | {'oneDNN' if onednn else 'torch'} | {fp32:.3f} | "
                        f"{'error' if bf16 is None else f'{bf16:.3f}'} | {ratio} |")
            data["results"].append({"cell": cell, "onednn": onednn, "fp32": fp32, "bf16": bf16})
            print(rows[-1], file=sys.stderr, flush=True)
    record(f"bf16 autocast without native bf16 (2x{args.hidden}, batch 32, 64 steps)",
           f"python benchmarks/bf16_without_native.py --hidden {args.hidden} --threads {args.threads}",
           "\n".join(rows), data)


if __name__ == "__main__":
    main()
