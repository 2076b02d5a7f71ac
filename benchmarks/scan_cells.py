"""The parallel-scan cells (mingru, minlstm) against the LSTM at the same shape: training
throughput through charrnn's own loop, and sampling speed at batch 1.

    python benchmarks/scan_cells.py [--threads 2] [--cells lstm mingru minlstm] [--hidden 256]
        [--layers 2] [--batch 16] [--bptt 128] [--steps 20] [--rounds 3] [--chars 1000] [--write]

1. Training: ``charrnn.training.train`` (what `charrnn train` runs) on tinyshakespeare's
   training split, every cell at L x H with embedding 64, dropout 0.1, the same batch and
   window; ``--warmup`` untimed steps, then ``--steps`` timed (benchmarks/_common.py,
   ``trainer_chars_per_sec``). The cells take turns in ``--rounds`` rotated rounds; the
   ratio is the median over rounds of cell / LSTM in the same round.
2. Sampling: ``charrnn.decoding.sample`` at batch 1 (temperature 1, the engine `charrnn
   sample` uses) of ``--chars`` characters from an untrained model of each cell (speed
   does not depend on the weights), best of three per round, rounds rotated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, corpus_path, record, trainer_chars_per_sec  # noqa: E402

from charrnn.config import ModelConfig, SampleConfig  # noqa: E402
from charrnn.decoding import sample  # noqa: E402
from charrnn.models.lm import RNNLanguageModel  # noqa: E402
from charrnn.text.io import read_text  # noqa: E402
from charrnn.text.streams import split_text  # noqa: E402
from charrnn.text.tokenizers import train_tokenizer  # noqa: E402


def rotated(names: list[str], r: int) -> list[str]:
    return names[r % len(names):] + names[: r % len(names)]


def training(args, train_text: str, val_text: str) -> dict:
    rates: dict[str, list[float]] = {c: [] for c in args.cells}
    params: dict[str, int] = {}
    for r in range(args.rounds):
        for cell in rotated(args.cells, r):
            torch.set_num_threads(args.threads)
            cfg = ModelConfig(cell=cell, layers=args.layers, hidden_size=args.hidden, embedding_dim=64, dropout=0.1)
            out = trainer_chars_per_sec(train_text, val_text, cfg, batch=args.batch, bptt=args.bptt,
                                        precision=args.precision, threads=args.threads, device="cpu",
                                        warmup=args.warmup, steps=args.steps, log_interval=args.log_interval)
            rates[cell].append(out["chars_per_sec"])
            params[cell] = out["params"]
        print(f"training round {r + 1}: " + ", ".join(f"{c} {v[-1]:,.0f}" for c, v in rates.items()), file=sys.stderr)
    return {"rates": rates, "params": params}


def sampling(args, tokenizer) -> dict:
    rates: dict[str, list[float]] = {c: [] for c in args.cells}
    models = {}
    for cell in args.cells:
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=tokenizer.vocab_size, cell=cell, layers=args.layers, hidden_size=args.hidden,
                          embedding_dim=64)
        models[cell] = RNNLanguageModel(cfg).eval()
    config = SampleConfig(length=args.chars, temperature=1.0, seed=1)
    kw = dict(token_text=tokenizer.token_text, start_id=tokenizer.encode("\n")[0].item(), banned=tokenizer.banned_ids)
    prime = tokenizer.encode("\n")
    for r in range(args.rounds):
        for cell in rotated(args.cells, r):
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                sample(models[cell], prime, config, **kw)
                best = min(best, time.perf_counter() - t)
            rates[cell].append(args.chars / best)
        print(f"sampling round {r + 1}: " + ", ".join(f"{c} {v[-1]:,.0f}" for c, v in rates.items()), file=sys.stderr)
    return {"rates": rates}


def ratios(rates: dict[str, list[float]], base: str = "lstm") -> dict[str, float]:
    return {c: statistics.median(x / y for x, y in zip(v, rates[base])) for c, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cells", nargs="+", default=["lstm", "mingru", "minlstm"])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--bptt", type=int, default=128)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "auto"])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--log-interval", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chars", type=int, default=1000, help="characters sampled per timing")
    ap.add_argument("--write", action="store_true", help="append the tables to RESULTS.md")
    args = ap.parse_args()
    if "lstm" not in args.cells:
        args.cells.insert(0, "lstm")
    torch.set_num_threads(args.threads)
    text = read_text(corpus_path(args.corpus))
    train_text, val_text = split_text(text, 0.1)
    tokenizer = train_tokenizer("char", train_text)
    train = training(args, train_text, val_text[:4096])
    samp = sampling(args, tokenizer)
    t_ratio, s_ratio = ratios(train["rates"]), ratios(samp["rates"])
    shape = f"{args.layers}x{args.hidden}"
    rows = [f"| cell ({shape}) | parameters | training chars/s (batch {args.batch}, window {args.bptt}, "
            f"{args.precision}) | vs LSTM | sampling chars/s (batch 1) | vs LSTM |", "|---|---|---|---|---|---|"]
    for c in args.cells:
        rows.append(f"| {c} | {train['params'][c]:,} | {statistics.median(train['rates'][c]):,.0f} | "
                    f"**{t_ratio[c]:.2f}x** | {statistics.median(samp['rates'][c]):,.0f} | **{s_ratio[c]:.2f}x** |")
    table = "\n".join(rows)
    print(table)
    data = {"benchmark": "scan_cells", "threads": args.threads, "shape": shape, "batch": args.batch,
            "bptt": args.bptt, "precision": args.precision, "training": train, "sampling": samp,
            "training_vs_lstm": t_ratio, "sampling_vs_lstm": s_ratio}
    record("Parallel-scan cells against the LSTM: training and sampling speed", command_line(), table, data,
           write=args.write)


if __name__ == "__main__":
    main()
