"""Generation speed and memory: charrnn's decoder against a plain PyTorch sampling loop.

    python benchmarks/sampling.py [--threads 2] [--chars 3000]

1. Sampling speed at batch 1 for a 2x256 LSTM (embedding 64, 65-character vocabulary):
   characters/second of charrnn (`charrnn.generation.sample`) and of a plain loop that
   calls the same model's nn.LSTM once per character under torch.inference_mode, then softmax
   and torch.multinomial. Same model, same threads, same run.
2. Beam search with K = 8 against greedy decoding: seconds per generated token, the two
   timed in alternating rounds; and where a beam step's time goes (torch.profiler).
3. Peak RSS of `charrnn sample` generating 10,000 and 100,000 characters (separate
   processes, stdout to /dev/null).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, record  # noqa: E402

from charrnn.checkpoint import save_checkpoint  # noqa: E402
from charrnn.config import ModelConfig, SampleConfig, TrainConfig  # noqa: E402
from charrnn.decoding import beam_search, sample  # noqa: E402
from charrnn.models.lm import RNNLanguageModel  # noqa: E402
from charrnn.text.tokenizers import CharTokenizer  # noqa: E402

CHARS = "".join(chr(c) for c in range(32, 96)) + "\n"  # 65 characters


def plain_loop(model: RNNLanguageModel, n: int) -> None:
    x = torch.tensor([[1]])
    state = None
    with torch.inference_mode():  # the fastest plain form (no_grad measured ~2.5x slower here)
        for _ in range(n):
            out, state = model.rnn(model.embedding(x), state)
            probs = torch.softmax(model.decoder(out[:, -1]), dim=-1)
            x = torch.multinomial(probs, 1)
            int(x)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def peak_rss_mb(run_dir: str, n: int, threads: int) -> float:
    code = (
        "import resource, subprocess, sys\n"
        f"p = subprocess.run([sys.executable, '-m', 'charrnn', 'sample', {run_dir!r}, '-n', '{n}', '--seed', '1'],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "assert p.returncode == 0, p.stderr\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout)


PRODUCTS = {"aten::addmm", "aten::addmm_", "aten::addmv", "aten::addmv_", "aten::mm", "aten::mv", "mkl::_mkl_linear"}
STEP_ELEMENTWISE = {"aten::sigmoid_", "aten::tanh_", "aten::tanh", "aten::mul_", "aten::addcmul_", "aten::sub_",
                    "aten::add_", "aten::copy_", "aten::index_select"}


def beam_time_split(model, prime, kw, n: int) -> dict[str, float]:
    """Where a beam step's time goes, microseconds per step: the products, the step's
    elementwise work (gates, state copies, the embedding or table lookup and the beam
    reorder's copies), and the rest (log-softmax, top-k, the hypotheses' bookkeeping, and
    Python). Ops by torch.profiler's self CPU time, the rest as wall time minus both; the
    profiler's own cost inflates every part a little."""
    from torch.profiler import ProfilerActivity, profile

    cfg = SampleConfig(length=n, beam=8)
    beam_search(model, prime, cfg, **kw)  # warm
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        beam_search(model, prime, cfg, **kw)
    wall = time.perf_counter() - t
    parts = {"products": 0.0, "elementwise": 0.0}
    for ev in prof.key_averages():
        name = ev.key
        if name in PRODUCTS:
            parts["products"] += ev.self_cpu_time_total
        elif name in STEP_ELEMENTWISE:
            parts["elementwise"] += ev.self_cpu_time_total
    parts = {k: v / n for k, v in parts.items()}  # profiler times are in microseconds
    parts["bookkeeping"] = wall * 1e6 / n - parts["products"] - parts["elementwise"]
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chars", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7, help="alternating greedy/beam rounds")
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = CharTokenizer(CHARS)
    model = RNNLanguageModel(ModelConfig(vocab_size=tok.vocab_size, layers=2, hidden_size=256, embedding_dim=64, dropout=0.0)).eval()
    n = args.chars
    kw = dict(token_text=tok.token_text, start_id=1, banned=[0])
    prime = torch.tensor([1])

    plain_loop(model, 200)  # warm up
    t_plain = best_of(lambda: plain_loop(model, n))
    t_ours = best_of(lambda: sample(model, prime, SampleConfig(length=n, temperature=1.0, seed=1), **kw))
    # Greedy and beam alternate, round by round, and the ratio is the median of the
    # rounds' ratios: on a shared machine the speed drifts by tens of percent between
    # minutes, and timing all of one and then all of the other measured that drift.
    greedy_times, beam_times = [], []
    for _ in range(args.rounds):
        greedy_times.append(best_of(lambda: sample(model, prime, SampleConfig(length=n, greedy=True), **kw), 1))
        beam_times.append(best_of(lambda: beam_search(model, prime, SampleConfig(length=n, beam=8), **kw), 1))
    t_greedy, t_beam = statistics.median(greedy_times), statistics.median(beam_times)
    split = beam_time_split(model, prime, kw, min(n, 1000))

    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(f"{tmp}/best.safetensors", model, TrainConfig(), tok)
        rss = {k: peak_rss_mb(tmp, k, args.threads) for k in (10_000, 100_000)}

    speed_ratio = t_plain / t_ours
    beam_ratio = statistics.median(b / g for b, g in zip(beam_times, greedy_times))
    rows = [
        "| measurement | value |", "|---|---|",
        f"| plain loop (nn.LSTM per char, inference mode, softmax + multinomial), chars/s | {n / t_plain:,.0f} |",
        f"| charrnn sampling, chars/s | {n / t_ours:,.0f} |",
        f"| **charrnn / plain loop** | **{speed_ratio:.2f}x** (target >= 2) |",
        f"| greedy, ms per token (median of {args.rounds} rounds) | {1000 * t_greedy / n:.3f} |",
        f"| beam K=8, ms per token (median of {args.rounds} rounds) | {1000 * t_beam / n:.3f} |",
        f"| **beam K=8 / greedy** (median of the rounds' ratios) | **{beam_ratio:.2f}x** (target <= 2.0) |",
        f"| a beam step under torch.profiler, us: products / step elementwise / the rest | "
        f"{split['products']:.0f} / {split['elementwise']:.0f} / {split['bookkeeping']:.0f} |",
        f"| peak RSS, `charrnn sample -n 10000` | {rss[10_000]:.1f} MB |",
        f"| peak RSS, `charrnn sample -n 100000` | {rss[100_000]:.1f} MB ({rss[100_000] - rss[10_000]:+.1f} MB) |",
    ]
    record(f"Generation speed and memory (2x256 LSTM, {args.threads} threads, {n} chars)",
           command_line(), "\n".join(rows),
           {"benchmark": "sampling", "threads": args.threads, "chars": n, "plain_chars_per_sec": n / t_plain,
            "charrnn_chars_per_sec": n / t_ours, "speed_ratio": speed_ratio, "greedy_ms_per_token": 1000 * t_greedy / n,
            "beam8_ms_per_token": 1000 * t_beam / n, "beam_to_greedy": beam_ratio, "beam_step_split_us": split,
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(), "peak_rss_mb": rss},
           write=not args.no_write)


if __name__ == "__main__":
    main()
