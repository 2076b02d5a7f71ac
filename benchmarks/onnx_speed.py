"""Sampling speed at batch 1 on the CPU: charrnn's default path against ONNX Runtime.

    python benchmarks/onnx_speed.py [--tokens 1000] [--rounds 5] [--cells lstm gru]

For each cell, a 2x256 model (embedding 64) over tinyshakespeare's character vocabulary,
freshly initialised (speed does not depend on training), saved as a checkpoint and
exported with ``charrnn.export.export_checkpoint``. Each contender generates --tokens
tokens one at a time, the state carried, each drawn from the softmax of the logits
(temperature 1):

- onnxruntime's plain loop: the exported step graph (tokens (1, 1), h[, c]) with
  intra_op_num_threads 1 and 2, the draw in numpy (cumulative sum and a binary search on
  one uniform number): what a user who wants speed writes around the export;
- charrnn's default sampling path, ``LanguageModel.stream`` (every sampling control,
  incremental detokenizing; ``--engine auto``, which is charrnn's own step unless ONNX
  Runtime was measured faster here and its graph is cached);
- the same with ``engine="onnx"`` (ONNX Runtime behind charrnn's sampler);
- a plain loop calling the model's nn.LSTM / nn.GRU per token under inference_mode, then
  softmax and torch.multinomial.

Each contender runs in a process of its own (so that no other contender's thread pool
spins beside it: onnxruntime's idle threads spin, and in one process they slowed torch's
2-thread step by half), and the processes take turns, round by round, torch and
onnxruntime at the same thread count; the table gives the median tokens/s of the rounds and each one's
ratio to onnxruntime's plain loop at that thread count. ``--write`` appends the table to
RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, corpus_path, record  # noqa: E402

import charrnn  # noqa: E402
from charrnn.checkpoint import save_checkpoint  # noqa: E402
from charrnn.config import ModelConfig, SampleConfig, TrainConfig  # noqa: E402
from charrnn.export import export_checkpoint, session  # noqa: E402
from charrnn.models.cells import cell_kind  # noqa: E402
from charrnn.models.lm import RNNLanguageModel  # noqa: E402
from charrnn.text.char import CharTokenizer  # noqa: E402


def onnx_loop(sess, n: int, names: list[str], layers: int, hidden: int, rng: np.random.Generator) -> None:
    feed = {"tokens": np.ones((1, 1), dtype=np.int64)}
    for name in names:
        feed[name] = np.zeros((layers, 1, hidden), np.float32)
    for _ in range(n):
        logits, *state = sess.run(None, feed)
        feed.update(zip(names, state))
        z = logits[0, -1]
        p = np.exp(z - z.max())
        cdf = np.cumsum(p)
        feed["tokens"][0, 0] = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def stream_loop(lm, n: int, seed: int, engine: str = "auto") -> None:
    for _ in lm.stream("\n", SampleConfig(length=n, temperature=1.0, seed=seed, engine=engine)):
        pass


def plain_loop(model: RNNLanguageModel, n: int) -> None:
    x = torch.tensor([[1]])
    state = None
    with torch.inference_mode():
        for _ in range(n):
            out, state = model.rnn(model.embedding(x), state)
            x = torch.multinomial(torch.softmax(model.decoder(out[:, -1]), dim=-1), 1)
            int(x)


def _th(t: int) -> str:
    return f"{t} thread{'s' if t > 1 else ''}"


# Seconds between two contenders' rounds: an idle thread pool (onnxruntime's, OpenMP's)
# spins for a while after its last work, and the next contender would share the cores with it.
PAUSE = 0.5
KINDS = ("onnxruntime plain loop", "**charrnn default (stream)**", "charrnn stream, engine onnx", "plain loop")


def worker(conn, kind: str, threads: int, ckpt: str, graph: str, cell: str) -> None:
    """One contender in a process of its own (no other contender's thread pool spinning
    beside it): runs a round of n tokens whenever the parent asks, answers tokens/s."""
    torch.set_num_threads(threads)
    # Each contender its own cache: the default one an empty one, as on a machine where
    # ONNX Runtime was never asked for (auto is then charrnn's own step).
    os.environ["CHARRNN_CACHE"] = str(Path(ckpt).parent / f"cache-{abs(hash((kind, threads)))}")
    lm = charrnn.load(ckpt, device="cpu")
    names = list(cell_kind(cell).state_names)
    rng = np.random.default_rng(0)
    if kind == KINDS[0]:
        sess = session(graph, threads=threads)
        fn = lambda n: onnx_loop(sess, n, names, 2, 256, rng)  # noqa: E731
    elif kind == KINDS[1]:
        fn = lambda n: stream_loop(lm, n, 1)  # noqa: E731
    elif kind == KINDS[2]:
        fn = lambda n: stream_loop(lm, n, 1, "onnx")  # noqa: E731
    else:
        fn = lambda n: plain_loop(lm.model, n)  # noqa: E731
    fn(50)  # warm-up: allocations, thread pools, first-call costs, the graph cache
    conn.send("ready")
    while (n := conn.recv()) is not None:
        start = time.perf_counter()
        fn(n)
        conn.send(n / (time.perf_counter() - start))


def measure(cell: str, tok, args, tmp: Path) -> tuple[list[str], dict]:
    cfg = ModelConfig(vocab_size=tok.vocab_size, cell=cell, layers=2, hidden_size=256, embedding_dim=64, dropout=0.0)
    torch.manual_seed(0)
    model = RNNLanguageModel(cfg).eval()
    ckpt = tmp / f"{cell}.safetensors"
    save_checkpoint(ckpt, model, TrainConfig(), tok)
    result = export_checkpoint(ckpt, tmp / f"{cell}.onnx")
    ctx = mp.get_context("spawn")
    procs, pipes = {}, {}
    for t in (1, 2):
        for kind in KINDS:
            name = f"{kind.replace('plain loop', f'plain nn.{cell.upper()} loop') if kind == KINDS[3] else kind}, {_th(t)}"
            parent, child = ctx.Pipe()
            procs[name] = ctx.Process(target=worker, args=(child, kind, t, str(ckpt), str(result.graphs["step"]), cell))
            procs[name].start()
            pipes[name] = (t, kind, parent)
    for _, _, pipe in pipes.values():
        assert pipe.recv() == "ready"
    rates: dict[str, list[float]] = {name: [] for name in pipes}
    for _ in range(args.rounds):  # contenders in turn, one at a time
        for name, (_, _, pipe) in pipes.items():
            time.sleep(PAUSE)
            pipe.send(args.tokens)
            rates[name].append(pipe.recv())
    for name, (_, _, pipe) in pipes.items():
        pipe.send(None)
        procs[name].join()
    median = {name: statistics.median(r) for name, r in rates.items()}
    lines = []
    data = {"cell": cell, "max_diff_at_export": result.max_diff}
    for name, (threads, kind, _) in pipes.items():
        r = rates[name]
        ref = median[f"{KINDS[0]}, {_th(threads)}"]
        plain = median[f"plain nn.{cell.upper()} loop, {_th(threads)}"]
        lines.append(f"| 2x256 {cell.upper()} | {name} | {median[name]:,.0f} | {min(r):,.0f}-{max(r):,.0f} | "
                     f"{median[name] / ref:.2f}x | {median[name] / plain:.1f}x |")
        data[name.replace("*", "")] = median[name]
    return lines, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1000, help="tokens per contender per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru"])
    ap.add_argument("--write", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()

    text = Path(corpus_path("tinyshakespeare")).read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    rows, data = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells:
            lines, d = measure(cell, tok, args, Path(tmp))
            rows += lines
            data.append(d)
    table = "\n".join([f"onnxruntime {__import__('onnxruntime').__version__}; batch 1, {args.tokens} tokens x "
                        f"{args.rounds} rounds (alternating), temperature 1", "",
                        "| model | sampler | tokens/s (median) | min-max | vs onnxruntime's loop, same threads | "
                        "vs plain loop |", "|---|---|---|---|---|---|", *rows])
    record("Sampling at batch 1: charrnn's default path against ONNX Runtime's plain loop", command_line(), table,
           {"benchmark": "onnx_speed", "results": data}, write=args.write)


if __name__ == "__main__":
    main()
