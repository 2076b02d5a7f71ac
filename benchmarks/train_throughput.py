"""Training throughput (characters/s): charrnn's training loop against a plain PyTorch loop.

    python benchmarks/train_throughput.py [--threads 2] [--cells lstm gru] [--sizes 256 512]
        [--layers 2] [--batch 64] [--bptt 128] [--warmup 5] [--steps 20] [--rounds 5]

For each cell and hidden size (2 layers, embedding 64, dropout 0.1 on both sides: charrnn's
default), on the training split of tinyshakespeare (the first 90% of the characters, ids
from charrnn's char tokenizer, so both sides see the same ids and vocabulary):

- reference fp32: a plain loop written here (benchmarks/_common.py, ReferenceLoop):
  Embedding -> nn.LSTM | nn.GRU (batch_first) -> Dropout -> Linear, torch.optim.Adam with
  its defaults (not fused), clip_grad_norm_, state carried and detached across consecutive
  windows of the (B, S) stream layout. ``--warmup`` untimed steps, then ``--steps`` timed.
- reference bf16: the same loop under torch.autocast(bfloat16), when the hardware has
  native bf16 (what charrnn's precision "auto" would pick), so that the bf16 column has a
  like-for-like reference too.
- charrnn fp32 and charrnn auto: ``charrnn.training.Trainer`` (the loop `charrnn train`
  runs), ``--warmup + --steps`` steps, a progress event every ``--log-interval`` steps;
  throughput is taken from the events' tokens/s (charrnn's own clock), dropping the
  windows of the warm-up steps. The checkpoints saved before step 1 and the final
  evaluation (on a 4,096-character piece of the validation split) are outside the timed
  windows; there is no evaluation in between.

The arms run one after the other, in ``--rounds`` rounds whose order rotates (A B C D,
B C D A, ...), all in this process with the same thread count, so slow drift of a shared
machine touches every arm alike. The table shows the median chars/s of each arm over the
rounds; each ratio is the median over rounds of that round's charrnn / reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ReferenceLM,
    ReferenceLoop,
    command_line,
    corpus_path,
    record,
    trainer_chars_per_sec,
)

from charrnn.config import ModelConfig
from charrnn.text.io import read_text
from charrnn.text.streams import split_text
from charrnn.runtime import resolve_device, resolve_precision
from charrnn.text.tokenizers import train_tokenizer

VAL_CHARS = 4096  # validation text given to the Trainer: only its final evaluation reads it


def measure_config(args, cell: str, hidden: int, train_text: str, val_text: str, ids: torch.Tensor,
                   vocab: int, bf16: torch.dtype | None) -> dict:
    """All arms for one model size, ``args.rounds`` rotated rounds; chars/s per arm per round."""
    device = resolve_device(args.device)
    model_config = ModelConfig(cell=cell, layers=args.layers, hidden_size=hidden, embedding_dim=args.embedding,
                               dropout=args.dropout)

    def reference(dtype):
        def run() -> float:
            torch.manual_seed(0)
            model = ReferenceLM(cell, vocab, args.layers, hidden, args.embedding, args.dropout)
            loop = ReferenceLoop(model, ids, args.batch, args.bptt, device, dtype)
            return loop.chars_per_sec(args.warmup, args.steps)
        return run

    def charrnn(precision):
        def run() -> float:
            r = trainer_chars_per_sec(train_text, val_text, model_config, batch=args.batch, bptt=args.bptt,
                                      precision=precision, threads=args.threads, device=args.device,
                                      warmup=args.warmup, steps=args.steps, log_interval=args.log_interval)
            if r["skipped_steps"]:
                print(f"warning: charrnn {precision} skipped {r['skipped_steps']} non-finite steps", file=sys.stderr)
            used[precision] = r["precision"]
            return r["chars_per_sec"]
        return run

    used: dict[str, str] = {}
    arms = {"reference_fp32": reference(None), "charrnn_fp32": charrnn("fp32"), "charrnn_auto": charrnn("auto")}
    if bf16 is not None:
        arms["reference_bf16"] = reference(bf16)
    names = list(arms)
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            torch.set_num_threads(args.threads)
            rates[name].append(arms[name]())
        done = ", ".join(f"{n} {rates[n][-1]:,.0f}" for n in names)
        print(f"{cell} {args.layers}x{hidden} round {r + 1}/{args.rounds}: {done}", file=sys.stderr)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[a], rates[b]))

    out = {"cell": cell, "layers": args.layers, "hidden": hidden, "auto_precision": used.get("auto"),
           "chars_per_sec": {n: statistics.median(v) for n, v in rates.items()}, "rounds": rates,
           "ratio_fp32": ratio("charrnn_fp32", "reference_fp32"),
           "ratio_auto_vs_reference_fp32": ratio("charrnn_auto", "reference_fp32")}
    if bf16 is not None:
        out["ratio_auto_vs_reference_bf16"] = ratio("charrnn_auto", "reference_bf16")
    return out


def table(results: list[dict], with_bf16: bool) -> str:
    head = ["cell", "size", "reference fp32 chars/s", "charrnn fp32 chars/s", "fp32 ratio",
            "charrnn auto chars/s (precision)", "auto / reference fp32"]
    if with_bf16:
        head += ["reference bf16 chars/s", "auto / reference bf16"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c = r["chars_per_sec"]
        cells = [r["cell"].upper(), f"{r['layers']}x{r['hidden']}", f"{c['reference_fp32']:,.0f}",
                 f"{c['charrnn_fp32']:,.0f}", f"**{r['ratio_fp32']:.2f}x**",
                 f"{c['charrnn_auto']:,.0f} ({r['auto_precision']})", f"**{r['ratio_auto_vs_reference_fp32']:.2f}x**"]
        if with_bf16:
            cells += [f"{c['reference_bf16']:,.0f}", f"{r['ratio_auto_vs_reference_bf16']:.2f}x"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="tinyshakespeare", help="registered corpus name or a path")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every arm")
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512], help="hidden sizes")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embedding", type=int, default=64, help="embedding size (charrnn's default)")
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout on both sides (charrnn's default)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--bptt", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of every run")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run")
    ap.add_argument("--log-interval", type=int, default=5, help="charrnn steps per progress event (timing window)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of all arms, order rotated each round")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--no-reference-bf16", action="store_true", help="skip the bf16-autocast reference arm")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    if args.warmup % args.log_interval or args.steps % args.log_interval:
        ap.error("--warmup and --steps must be multiples of --log-interval")
    if args.rounds < 1 or args.steps < 1:
        ap.error("--rounds and --steps must be >= 1")

    torch.set_num_threads(args.threads)
    train_text, val_text = split_text(read_text(corpus_path(args.corpus)), 0.1)
    val_text = val_text[:VAL_CHARS]
    tok = train_tokenizer("char", train_text)  # the ids and vocabulary the Trainer will use
    ids = tok.encode(train_text).long()
    bf16 = None if args.no_reference_bf16 else resolve_precision("auto", resolve_device(args.device))

    results = [measure_config(args, cell, hidden, train_text, val_text, ids, tok.vocab_size, bf16)
               for cell in args.cells for hidden in args.sizes]
    title = (f"Training throughput: charrnn vs a plain PyTorch loop ({args.threads} threads, batch {args.batch}, "
             f"bptt {args.bptt})")
    notes = (f"\n\nchars/s: median of {args.rounds} rounds ({args.warmup} warm-up + {args.steps} timed steps per run, "
             f"arm order rotated each round); ratios: median of the per-round ratios. Both sides: embedding "
             f"{args.embedding}, dropout {args.dropout:g}, {args.corpus} training split, {args.threads} threads. "
             "Reference: Adam (not fused), fp32 or bf16 autocast; charrnn: its Trainer (fused AdamW), "
             "precision fp32 or auto.")
    data = {"benchmark": "train_throughput", "corpus": args.corpus, "threads": args.threads, "batch": args.batch,
            "bptt": args.bptt, "embedding": args.embedding, "dropout": args.dropout, "warmup": args.warmup,
            "steps": args.steps, "rounds": args.rounds, "device": str(resolve_device(args.device)),
            "torch": torch.__version__, "results": results}
    record(title, command_line(), table(results, bf16 is not None) + notes, data, write=not args.no_record)


if __name__ == "__main__":
    main()
