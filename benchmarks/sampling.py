"""Generation speed and memory: charrnn's decoder against a plain PyTorch sampling loop.

    python benchmarks/sampling.py [--threads 2] [--chars 3000]

1. Sampling speed at batch 1 for a 2x256 LSTM (embedding 64, 65-character vocabulary):
   characters/second of charrnn (`charrnn.generation.sample`) and of a plain loop that
   calls the same model's nn.LSTM once per character under torch.inference_mode, then softmax
   and torch.multinomial. Same model, same threads, same run.
2. Beam search with K = 8 against greedy decoding: seconds per generated token, the two
   timed in alternating rounds; and where a beam step's time goes (``beam_time_split``).
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


def beam_time_split(model, prime, kw, n: int, rounds: int = 5) -> dict[str, float]:
    """Where a beam step's time goes, microseconds per step (medians of ``rounds``): the
    step's products alone (the same calls on the same shapes as the step makes), the rest
    of the decoder step of 8 rows (gates, state copies, the input lookup: "elementwise"),
    and the rest of a beam search step (log-softmax, top-k, the beam reorder, the
    hypotheses' bookkeeping in Python)."""
    from charrnn.decoding.engines import make_step

    step = make_step(model, 8, "torch")
    step.start(None, 8)
    tokens = torch.randint(0, model.config.vocab_size, (8,))
    x = [torch.randn(8, w.shape[0]) for w in step.w]
    h = torch.randn(8, model.config.hidden_size)

    def products() -> None:
        for i in range(step.layers):
            step._product("w", i, x[i], step.g)
            if step.fused is torch.gru_cell:
                step._product("w_hh", i, h, step.gh)
        torch.addmm(step.dec_b, h, step.dec_w, out=step.logits)

    def per_call(fn, calls: int = 500) -> float:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t) / calls * 1e6

    cfg = SampleConfig(length=n, beam=8)
    parts: dict[str, list[float]] = {"products": [], "step": [], "beam": []}
    with torch.inference_mode():
        for _ in range(rounds):
            parts["products"].append(per_call(products))
            parts["step"].append(per_call(lambda: step.step(tokens)))
            parts["beam"].append(per_call(lambda: beam_search(model, prime, cfg, **kw), 1) / n)
    m = {k: statistics.median(v) for k, v in parts.items()}
    return {"products": m["products"], "elementwise": m["step"] - m["products"], "bookkeeping": m["beam"] - m["step"],
            "beam_step": m["beam"]}


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
        f"| a beam step, us: products / the step's elementwise rest / beam bookkeeping (of {split['beam_step']:.0f}) | "
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
