"""Sampling speed of an exported model: ONNX Runtime against PyTorch, batch 1, on the CPU.

    python benchmarks/onnx_speed.py [--tokens 1000] [--rounds 5]

A 2x256 LSTM (embedding 64) over tinyshakespeare's character vocabulary, freshly
initialised (speed does not depend on training), saved as a checkpoint and exported with
``charrnn.export.export_checkpoint``. Each contender generates --tokens tokens one at a time,
the state carried, each drawn from the softmax of the logits:

- onnxruntime, the exported step graph (tokens (1, 1), h, c), intra_op_num_threads 1 and 2,
  the draw in numpy (cumulative sum and a binary search on one uniform number);
- charrnn's own ``LanguageModel.stream`` (the fused StepRunner, sampling controls and
  incremental detokenizing), torch at 1 and 2 threads;
- a plain loop calling the model's nn.LSTM per token under inference_mode, then softmax
  and torch.multinomial, torch at 1 and 2 threads.

The contenders run in alternating rounds in the same process; the table gives the median
tokens/s of the rounds and the ratio to charrnn's stream at the same thread count. Nothing
is written to RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_path, machine  # noqa: E402

import charrnn  # noqa: E402
from charrnn.checkpoint import save_checkpoint  # noqa: E402
from charrnn.config import ModelConfig, SampleConfig, TrainConfig  # noqa: E402
from charrnn.export import export_checkpoint, session  # noqa: E402
from charrnn.models.lm import RNNLanguageModel  # noqa: E402
from charrnn.text.char import CharTokenizer  # noqa: E402


def onnx_loop(sess, n: int, layers: int, hidden: int, rng: np.random.Generator) -> None:
    token = np.ones((1, 1), dtype=np.int64)
    h = np.zeros((layers, 1, hidden), np.float32)
    c = np.zeros_like(h)
    for _ in range(n):
        logits, h, c = sess.run(None, {"tokens": token, "h": h, "c": c})
        z = logits[0, -1]
        p = np.exp(z - z.max())
        cdf = np.cumsum(p)
        token[0, 0] = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def stream_loop(lm, n: int, seed: int) -> None:
    for _ in lm.stream("\n", SampleConfig(length=n, temperature=1.0, seed=seed)):
        pass


def plain_loop(model: RNNLanguageModel, n: int) -> None:
    x = torch.tensor([[1]])
    state = None
    with torch.inference_mode():
        for _ in range(n):
            out, state = model.rnn(model.embedding(x), state)
            x = torch.multinomial(torch.softmax(model.decoder(out[:, -1]), dim=-1), 1)
            int(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1000, help="tokens per contender per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    text = Path(corpus_path("tinyshakespeare")).read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    cfg = ModelConfig(vocab_size=tok.vocab_size, cell="lstm", layers=2, hidden_size=256, embedding_dim=64, dropout=0.0)
    torch.manual_seed(0)
    model = RNNLanguageModel(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "best.safetensors"
        save_checkpoint(ckpt, model, TrainConfig(), tok)
        result = export_checkpoint(ckpt, Path(tmp) / "lm.onnx")
        sessions = {t: session(result.graphs["step"], threads=t) for t in (1, 2)}
        lm = charrnn.load(ckpt, device="cpu")

    rng = np.random.default_rng(0)
    contenders = {
        **{f"onnxruntime, {t} thread{'s' if t > 1 else ''}": (t, lambda n, s=sessions[t]: onnx_loop(s, n, 2, 256, rng))
           for t in (1, 2)},
        **{f"charrnn stream, {t} thread{'s' if t > 1 else ''}": (t, lambda n: stream_loop(lm, n, 1)) for t in (1, 2)},
        **{f"plain nn.LSTM loop, {t} thread{'s' if t > 1 else ''}": (t, lambda n: plain_loop(model, n)) for t in (1, 2)},
    }
    for threads, fn in contenders.values():  # warm-up: allocations, thread pools, first-call costs
        torch.set_num_threads(threads)
        fn(50)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, (threads, fn) in contenders.items():
            torch.set_num_threads(threads)
            start = time.perf_counter()
            fn(args.tokens)
            rates[name].append(args.tokens / (time.perf_counter() - start))

    median = {name: statistics.median(r) for name, r in rates.items()}
    base = {t: median[f"charrnn stream, {t} thread{'s' if t > 1 else ''}"] for t in (1, 2)}
    lines = [f"machine: {machine()}; onnxruntime {__import__('onnxruntime').__version__}",
             f"2x256 LSTM, vocabulary {tok.vocab_size}, batch 1, {args.tokens} tokens x {args.rounds} rounds "
             f"(alternating), max |onnxruntime - PyTorch| at export {result.max_diff:.1e}", "",
             "| sampler | tokens/s (median) | min-max | vs charrnn stream, same threads |", "|---|---|---|---|"]
    for name, (threads, _) in contenders.items():
        r = rates[name]
        lines.append(f"| {name} | {median[name]:,.0f} | {min(r):,.0f}-{max(r):,.0f} | {median[name] / base[threads]:.2f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
