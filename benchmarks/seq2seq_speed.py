"""Encoder-decoder speed on grapheme-to-phoneme pairs: charrnn's training loop against a
plain PyTorch loop of the same model, and charrnn's decoding speed.

    python benchmarks/seq2seq_speed.py [--steps 200] [--warmup 10] [--rounds 2] [--threads N]
        [--decode-steps 500] [--test-words N] [--decode-repeats 2] [--plain-bucketed]
        [--skip-throughput] [--skip-decode] [--data DIR] [--keep] [--quick]

Data: DIR/bul_{train,dev,test}.tsv, `word<TAB>phones` with the phones space-separated
(SIGMORPHON 2021 task 1, medium set: 8,000 / 1,000 / 1,000 pairs). DIR defaults to
$CHARRNN_CORPORA/g2p-sigmorphon2021/medium, else ../shared/corpora/... next to this checkout.
Every charrnn command runs in a subprocess with OMP_NUM_THREADS=T (and `--threads T` for
`charrnn train`); the plain loop runs in this process with torch.set_num_threads(T).
T (--threads) defaults to torch's default here.

1. Training pairs/s, the same model size and data on both sides: charrnn's default
   encoder-decoder (source chars embedded in 128, a bidirectional 1x256 LSTM encoder, a
   bridge tanh(Linear(512 -> 256)) from the final forward/backward states to the decoder's
   h0 (c0 = 0), a 1x256 LSTM decoder with input feeding, Luong "general" attention,
   attentional vector tanh(W_c [c_t; o_t]), dropout 0.3, batch 64, lr 3e-3, clip 1.0).

   plain: a loop written here. nn.LSTM(bidirectional=True) over padded batches (no
     packing); the forward final state is read at each row's last real character, the
     backward one at position 0 (so on padded rows it has read the padding first: a plain
     loop's usual shortcut, the same cost); keys W m_s computed once per batch; an
     nn.LSTMCell(128 + 256, 256) stepping over the target with input feeding, masked
     softmax over the source padding; the output Linear(256, V) applied once to the
     stacked attentional vectors; cross-entropy over the target tokens (SOS .. EOS, the
     decoder reads SOS y_1 .. y_m and predicts y_1 .. y_m EOS) ignoring padding;
     torch.optim.AdamW(lr=3e-3) with torch's defaults (on the CPU neither fused nor
     foreach), clip_grad_norm_ 1.0, a constant learning rate. Batches of 64 pairs drawn
     from a random shuffle, padded to their longest source and target: no length
     bucketing (--plain-bucketed: the plain loop takes its batches from charrnn's own
     length-bucketed plan, text/pairs.py::PairBatches, to compare the implementations
     alone). Timed: --steps steps after --warmup untimed ones, from a fresh model.
   charrnn: `charrnn train --task seq2seq bul_train.tsv --val-file bul_dev.tsv
     --target-tokenizer space --attention general --max-steps W+S --eval-interval W+S
     --log-interval W --threads T` (its defaults: the model above, length-bucketed batches, fused AdamW
     with warm-up and cosine decay). Its rate is read from metrics.jsonl: the "train"
     events after step W (--log-interval W puts a window boundary at step W; the last
     window ends at step W+S), combined as total pairs / total seconds, where a window's
     pairs = its pairs_per_sec x its length (the difference of the events' "time"). That
     is the steps-weighted harmonic mean of the windows' rates, i.e. exactly the pairs of
     the timed steps over their time, like the plain loop's figure. The summary's
     train_pairs_per_sec (all steps, plus the final validation on dev and the checkpoint
     save) is printed for reference.

   Plain and charrnn alternate for --rounds rounds (plain first in each); the ratio is the
   median of the per-round ratios charrnn / plain (target >= 1.0). The parameter counts of
   both models are printed (charrnn's from `charrnn info RUN --json`); they differ only by
   vocabulary rows: charrnn's source vocabulary holds "\\n" (its char tokenizer is
   trained on the newline-joined words) besides unknown and padding, the plain one holds
   unknown and padding; both target vocabularies are the phones + unknown, padding, SOS,
   EOS. The script checks that the difference is exactly those rows (no bias terms or
   layers differ) and says so. The mean padded source/target lengths of both batchings
   are printed too: unbucketed random batches are longer, which is part of the ratio.

2. Decoding words/s with `charrnn predict RUN WORDS [--beam 5] --batch-size 1|256`, WORDS =
   the first --test-words lines of bul_test.tsv (default all 1,000; predict reads the
   source part of each line): four figures, greedy and beam 5, each words / (wall time -
   wall time of the same command on an empty file, i.e. the start-up: Python, torch, the
   checkpoint). Each command and its empty-file twin run --decode-repeats times (default
   2), alternating, and the fastest wall time of each is used. The model is trained for --decode-steps steps (default 500) in a run of
   its own, because an untrained model decodes to the length limit (source length x the
   longest training ratio + 10 tokens) and is slower than a trained one; when the
   throughput runs already made that many steps, the last one is used instead. Its greedy
   dev accuracy and the mean number of phones per decoded word (against the test
   references' mean) are printed to show whether it decodes to the limit.

--quick is a smoke test: 5 warm-up + 20 timed steps, one round, decoding with the
throughput run (25 steps: an almost untrained model, decoding to the length limit) on 50
test words once each, and 100 dev pairs for charrnn's validation (about 2 minutes on a
busy 2-core machine with --threads 1; its decoding figures are mostly start-up noise).
--skip-throughput / --skip-decode leave out part 1 / part 2. All files go to a temporary
directory, removed at the end unless --keep (a failed run leaves it); nothing is written
to RESULTS.md. The figures are printed, and a JSON line with all of them at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

from charrnn.text.pairs import PairBatches

LANG = "bul"
BATCH, LR, CLIP, EMB, HIDDEN, DROPOUT = 64, 3e-3, 1.0, 128, 256, 0.3
PAD, UNK, SOS, EOS = 0, 1, 2, 3  # the plain loop's special ids (the source side uses PAD and UNK)
CHARRNN_SEED = 1337  # TrainConfig's default seed: PairBatches' plan for the padding statistics


def default_data_dir() -> Path:
    env = os.environ.get("CHARRNN_CORPORA")
    root = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"
    return root / "g2p-sigmorphon2021" / "medium"


def read_pairs(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            source, target = line.split("\t")
            out.append((source.strip(), target.split()))
    return out


def charrnn(*args: str, threads: int) -> tuple[str, float]:
    """Run `python -m charrnn ARGS` with OMP_NUM_THREADS=threads; (stdout, wall seconds).
    Exits with the command and stderr on failure."""
    cmd = [sys.executable, "-m", "charrnn", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"command failed (exit {proc.returncode}): {shlex.join(cmd)}\n{proc.stderr.strip()}")
    return proc.stdout, wall


# ----------------------------------------------------------------------------- 1. the plain loop

class PlainSeq2Seq(nn.Module):
    """Bi-LSTM encoder, bridge, LSTMCell decoder with input feeding and general attention."""

    def __init__(self, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.src_embedding = nn.Embedding(src_vocab, EMB)
        self.tgt_embedding = nn.Embedding(tgt_vocab, EMB)
        self.encoder = nn.LSTM(EMB, HIDDEN, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * HIDDEN, HIDDEN)
        self.decoder = nn.LSTMCell(EMB + HIDDEN, HIDDEN)
        self.attn_key = nn.Linear(2 * HIDDEN, HIDDEN, bias=False)  # general: o_t . W m_s
        self.attn_out = nn.Linear(3 * HIDDEN, HIDDEN, bias=False)  # W_c [c_t; o_t]
        self.drop = nn.Dropout(DROPOUT)
        self.generator = nn.Linear(HIDDEN, tgt_vocab)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """src (N, S) padded with PAD, src_len (N,), tgt_in (N, T) = SOS y_1 .. -> logits (N, T, V)."""
        n, s = src.shape
        mask = torch.arange(s).unsqueeze(0) < src_len.unsqueeze(1)  # (N, S) True at real positions
        memory, _ = self.encoder(self.drop(self.src_embedding(src)))  # (N, S, 512), no packing
        last = (src_len - 1).view(n, 1, 1).expand(n, 1, HIDDEN)
        final = torch.cat([memory[:, :, :HIDDEN].gather(1, last).squeeze(1), memory[:, 0, HIDDEN:]], dim=-1)
        h = torch.tanh(self.bridge(final))  # (N, 256)
        c = torch.zeros_like(h)
        keys = self.attn_key(memory)  # (N, S, 256)
        emb = self.drop(self.tgt_embedding(tgt_in))  # (N, T, 128)
        feed = h.new_zeros(n, HIDDEN)
        outs = []
        for t in range(tgt_in.shape[1]):
            h, c = self.decoder(torch.cat([emb[:, t], feed], dim=-1), (h, c))
            scores = torch.bmm(keys, h.unsqueeze(2)).squeeze(2).masked_fill(~mask, float("-inf"))  # (N, S)
            context = torch.bmm(torch.softmax(scores, dim=-1).unsqueeze(1), memory).squeeze(1)  # (N, 512)
            feed = torch.tanh(self.attn_out(torch.cat([context, h], dim=-1)))  # (N, 256)
            outs.append(feed)
        return self.generator(self.drop(torch.stack(outs, dim=1)))  # (N, T, V)


class PlainData:
    """The plain loop's own vocabularies and ids: source chars, target phones with SOS/EOS."""

    def __init__(self, pairs: list[tuple[str, list[str]]]):
        chars = sorted({ch for src, _ in pairs for ch in src})
        phones = sorted({p for _, tgt in pairs for p in tgt})
        self.src_index = {ch: i + 2 for i, ch in enumerate(chars)}  # 0 PAD, 1 UNK
        self.tgt_index = {p: i + 4 for i, p in enumerate(phones)}  # 0 PAD, 1 UNK, 2 SOS, 3 EOS
        self.src_vocab, self.tgt_vocab = len(chars) + 2, len(phones) + 4
        self.src = [[self.src_index.get(ch, UNK) for ch in s] for s, _ in pairs]
        self.tgt = [[SOS, *(self.tgt_index.get(p, UNK) for p in t), EOS] for _, t in pairs]

    def padded(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src_len = torch.tensor([len(self.src[i]) for i in rows])
        src = torch.full((len(rows), int(src_len.max())), PAD, dtype=torch.long)
        tgt = torch.full((len(rows), max(len(self.tgt[i]) for i in rows)), PAD, dtype=torch.long)
        for r, i in enumerate(rows):
            src[r, : len(self.src[i])] = torch.tensor(self.src[i])
            tgt[r, : len(self.tgt[i])] = torch.tensor(self.tgt[i])
        return src, src_len, tgt

    def bucketed(self, seed: int) -> PairBatches:
        """charrnn's length-bucketed batch plan over these ids (same lengths as charrnn's)."""
        return PairBatches(self.src, self.tgt, BATCH, seed, PAD, PAD, bucket=True)


def plain_model(data: PlainData) -> PlainSeq2Seq:
    return PlainSeq2Seq(data.src_vocab, data.tgt_vocab)


def plain_pairs_per_sec(data: PlainData, warmup: int, steps: int, seed: int, bucketed: bool) -> tuple[float, float]:
    """(pairs/s over the timed steps, their final training loss)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = plain_model(data).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    plan = data.bucketed(seed) if bucketed else None
    order: list[int] = []
    loss = torch.tensor(float("nan"))

    def step() -> None:
        nonlocal order, loss
        if plan is not None:
            (src, src_len, tgt, _), _ = plan.next()
        else:
            if len(order) < BATCH:
                order = list(range(len(data.src)))
                rng.shuffle(order)
            rows, order = order[:BATCH], order[BATCH:]
            src, src_len, tgt = data.padded(rows)
        logits = model(src, src_len, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - t), float(loss.detach())


def padding_stats(data: PlainData, seed: int) -> dict:
    """Mean padded source length and decoder steps (target length - 1) per batch over one
    epoch: random batches (the plain loop) and charrnn's length-bucketed plan."""
    rng = random.Random(seed)
    order = list(range(len(data.src)))
    rng.shuffle(order)
    random_batches = [order[i : i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
    bucketed = data.bucketed(CHARRNN_SEED).plan(0)

    def means(batches: list[list[int]]) -> tuple[float, float]:
        return (statistics.fmean(max(len(data.src[i]) for i in b) for b in batches),
                statistics.fmean(max(len(data.tgt[i]) for i in b) - 1 for b in batches))

    (rs, rt), (bs, bt) = means(random_batches), means(bucketed)
    return {"random_src": rs, "random_tgt_steps": rt, "bucketed_src": bs, "bucketed_tgt_steps": bt,
            "real_src": statistics.fmean(map(len, data.src)),
            "real_tgt_steps": statistics.fmean(len(t) - 1 for t in data.tgt)}


# ----------------------------------------------------------------------------- 1. charrnn

def train_command(files: dict, run: Path, steps: int, log_interval: int, threads: int) -> list[str]:
    return ["train", "--task", "seq2seq", str(files["train"]), "--val-file", str(files["dev"]),
            "--target-tokenizer", "space", "--attention", "general", "--out", str(run), "--overwrite",
            "--max-steps", str(steps), "--eval-interval", str(steps), "--log-interval", str(log_interval),
            "--threads", str(threads), "--json", "--quiet"]


def charrnn_pairs_per_sec(files: dict, run: Path, warmup: int, steps: int, threads: int) -> dict:
    """charrnn's rate over the metrics.jsonl windows after ``warmup`` steps, and its summary."""
    out, wall = charrnn(*train_command(files, run, warmup + steps, warmup or steps, threads), threads=threads)
    summary = json.loads(out)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    train = sorted((r for r in records if r.get("event") == "train"), key=lambda r: r["step"])
    pairs = seconds = 0.0
    windows = 0
    if warmup == 0 and train:  # the first window starts with the training loop, whose start is not logged:
        first = train[0]  # its pairs are its steps' (every batch holds 64 pairs: 8,000 = 125 x 64)
        pairs, seconds, windows = first["step"] * BATCH, first["step"] * BATCH / first["pairs_per_sec"], 1
    for prev, cur in itertools.pairwise(train):
        if prev["step"] >= warmup:
            dt = cur["time"] - prev["time"]
            pairs, seconds, windows = pairs + cur["pairs_per_sec"] * dt, seconds + dt, windows + 1
    return {"loop": pairs / seconds if seconds else float("nan"), "windows": windows,
            "summary": summary["train_pairs_per_sec"], "steps": summary["steps"], "wall": wall,
            "train_loss": train[-1]["train_loss"] if train else None, "val_accuracy": summary.get("val_accuracy")}


def throughput(files: dict, data: PlainData, tmp: Path, args) -> dict:
    plain, loop, summ, runs = [], [], [], []
    for r in range(args.rounds):
        rate, loss = plain_pairs_per_sec(data, args.warmup, args.steps, seed=r, bucketed=args.plain_bucketed)
        plain.append(rate)
        run = tmp / f"throughput-{r}"
        c = charrnn_pairs_per_sec(files, run, args.warmup, args.steps, args.threads)
        loop.append(c["loop"])
        summ.append(c["summary"])
        runs.append(c)
        print(f"  round {r + 1}/{args.rounds}: plain {rate:,.1f} pairs/s (last loss {loss:.3f}); charrnn loop "
              f"{c['loop']:,.1f} pairs/s over {c['windows']} window(s) (last train loss {c['train_loss']:.3f}), "
              f"summary {c['summary']:,.1f}; ratio {c['loop'] / rate:.3f}", flush=True)
    return {"plain": plain, "charrnn_loop": loop, "charrnn_summary": summ, "runs": runs,
            "ratio_loop": statistics.median(a / b for a, b in zip(loop, plain)),
            "ratio_summary": statistics.median(a / b for a, b in zip(summ, plain)), "last_run": str(run)}


# ----------------------------------------------------------------------------- 2. decoding

def decode_speed(run: Path, words_file: Path, refs: list[list[str]], tmp: Path, threads: int, repeats: int) -> dict:
    empty = tmp / "empty.txt"
    empty.write_text("", encoding="utf-8")
    out: dict = {"words": len(refs), "ref_phones_mean": statistics.fmean(map(len, refs))}
    for beam in (0, 5):
        for bs in (1, 256):
            opts = ["--batch-size", str(bs), *(["--beam", str(beam)] if beam else [])]
            startups, walls = [], []
            for _ in range(repeats):  # alternating; the fastest of each (noise only adds time)
                startups.append(charrnn("predict", str(run), str(empty), *opts, threads=threads)[1])
                stdout, wall = charrnn("predict", str(run), str(words_file), *opts, threads=threads)
                walls.append(wall)
            startup, wall = min(startups), min(walls)
            lines = stdout.splitlines()
            if len(lines) != len(refs):
                print(f"warning: predict {shlex.join(opts)} printed {len(lines)} lines for {len(refs)} words",
                      file=sys.stderr)
            key = f"beam{beam}_bs{bs}"
            net = wall - startup  # at or below zero: start-up noise larger than the decoding itself
            out[key] = {"wall": wall, "startup": startup, "walls": walls, "startups": startups,
                        "words_per_sec": len(refs) / net if net > 0 else None,
                        "phones_mean": statistics.fmean(len(x.split()) for x in lines) if lines else 0.0,
                        "exact": sum(x.split() == r for x, r in zip(lines, refs)) / len(refs)}
            print(f"  {'greedy' if not beam else 'beam 5':>6}, --batch-size {bs:>3}: "
                  + (f"{len(refs) / net:,.1f} words/s" if net > 0 else "n/a (wall below start-up: noise)")
                  + f" (wall {wall:.2f} s - start-up {startup:.2f} s); "
                  f"{out[key]['phones_mean']:.2f} phones/word, exact match {out[key]['exact']:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200, help="timed steps per throughput run (after --warmup)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed ones")
    ap.add_argument("--rounds", type=int, default=2, help="throughput rounds (plain, charrnn alternating)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch threads for every run (default: torch's default here, %(default)s)")
    ap.add_argument("--decode-steps", type=int, default=500,
                    help="training steps of the model decoded in 2 (0: the last throughput run)")
    ap.add_argument("--test-words", type=int, default=None, help="decode the first N test words (default: all)")
    ap.add_argument("--decode-repeats", type=int, default=2,
                    help="runs of each predict command and of its empty-file twin; the fastest of each is used")
    ap.add_argument("--plain-bucketed", action="store_true",
                    help="the plain loop takes charrnn's length-bucketed batches instead of random ones")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--data", type=Path, default=None, help=f"directory with {LANG}_{{train,dev,test}}.tsv")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (runs, metrics)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 5 warm-up + 20 timed steps, 1 round, "
                    "decoding the throughput run on 50 test words, 100 dev pairs")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.warmup, args.rounds, args.decode_steps, args.test_words = 20, 5, 1, 0, 50
        args.decode_repeats = 1
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1 or args.decode_repeats < 1:
        raise SystemExit("--steps, --rounds and --decode-repeats must be >= 1, --warmup >= 0")
    data_dir = args.data or default_data_dir()
    files = {k: data_dir / f"{LANG}_{k}.tsv" for k in ("train", "dev", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (give --data DIR)")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-seq2seq-speed-"))
    if args.quick:  # a short validation: the final one decodes every dev word, to the length limit when untrained
        dev = tmp / "dev100.tsv"
        dev.write_text("".join(line + "\n" for line in files["dev"].read_text(encoding="utf-8").splitlines()[:100]),
                       encoding="utf-8")
        files["dev"] = dev
    print(f"machine: {machine()}; {args.threads} threads", flush=True)
    print(f"data: {data_dir} ({LANG}); work dir: {tmp}" + (" (--quick)" if args.quick else ""), flush=True)
    results: dict = {"benchmark": "seq2seq_speed", "lang": LANG, "threads": args.threads, "steps": args.steps,
                     "warmup": args.warmup, "rounds": args.rounds, "quick": args.quick,
                     "plain_bucketed": args.plain_bucketed}

    train_pairs = read_pairs(files["train"])
    data = PlainData(train_pairs)
    plain_params = sum(p.numel() for p in plain_model(data).parameters())
    pad = padding_stats(data, seed=0)
    results["padding"] = pad
    print(f"\n{len(train_pairs):,} training pairs; mean per batch of {BATCH}: source {pad['real_src']:.2f} chars, "
          f"{pad['real_tgt_steps']:.2f} decoder steps per pair; padded to the batch's longest: random batches "
          f"{pad['random_src']:.2f} / {pad['random_tgt_steps']:.2f}, charrnn's bucketed batches "
          f"{pad['bucketed_src']:.2f} / {pad['bucketed_tgt_steps']:.2f} (source chars / decoder steps)", flush=True)

    decode_run = None
    if not args.skip_throughput:
        batching = "charrnn's bucketed batches" if args.plain_bucketed else "random batches, no bucketing"
        print(f"\ntraining throughput (emb 128, bi-LSTM 1x256 encoder, bridge, LSTM 256 decoder with input feeding, "
              f"general attention, dropout 0.3, batch {BATCH}, lr {LR:g}, clip {CLIP:g}; plain loop: {batching}), "
              f"{args.warmup} warm-up + {args.steps} timed steps, {args.rounds} interleaved round(s):", flush=True)
        t = results["throughput"] = throughput(files, data, tmp, args)
        info = json.loads(charrnn("info", t["last_run"], "--json", threads=args.threads)[0])
        mc = info["model_config"]
        same_arch = (mc["cell"], mc["layers"], mc["hidden_size"], mc["embedding_dim"], mc["bidirectional"],
                     mc["attention"], mc["input_feeding"], mc["dropout"], mc["tie_weights"]) == \
                    ("lstm", 1, HIDDEN, EMB, True, "general", True, DROPOUT, False)
        # Rows of the vocabularies: a source row is one embedding (EMB); a target row an
        # embedding plus a generator row with its bias (EMB + HIDDEN + 1).
        d_src, d_tgt = mc["src_vocab_size"] - data.src_vocab, mc["tgt_vocab_size"] - data.tgt_vocab
        explained = d_src * EMB + d_tgt * (EMB + HIDDEN + 1)
        diff = info["params"] - plain_params
        results["params"] = {"plain": plain_params, "charrnn": info["params"], "difference": diff,
                             "vocab_rows_difference": explained, "plain_vocab": [data.src_vocab, data.tgt_vocab],
                             "charrnn_vocab": [mc["src_vocab_size"], mc["tgt_vocab_size"]],
                             "charrnn_model_config": mc}
        match = same_arch and diff == explained
        print(f"  parameters: plain {plain_params:,}, charrnn {info['params']:,} (difference {diff:+,}); vocabularies "
              f"(source, target incl. specials): plain {data.src_vocab}, {data.tgt_vocab}; charrnn "
              f"{mc['src_vocab_size']}, {mc['tgt_vocab_size']}: the vocabulary rows account for {explained:+,}; "
              + ("same architecture, the rest matches exactly" if match else
                 "MISMATCH: the plain loop is not charrnn's architecture (see model_config in the JSON)"), flush=True)
        med = {k: statistics.median(t[k]) for k in ("plain", "charrnn_loop", "charrnn_summary")}
        print(f"  medians: plain {med['plain']:,.1f} pairs/s; charrnn loop {med['charrnn_loop']:,.1f} pairs/s "
              f"(metrics.jsonl windows after step {args.warmup}: total pairs / total seconds); ratio charrnn / plain "
              f"{t['ratio_loop']:.3f}x (median of per-round ratios; target >= 1.0: "
              f"{'met' if t['ratio_loop'] >= 1 else 'not met'})")
        print(f"  charrnn summary train_pairs_per_sec (all steps + final validation on dev + saves): "
              f"{med['charrnn_summary']:,.1f} pairs/s; ratio {t['ratio_summary']:.3f}x", flush=True)
        if args.warmup + args.steps >= args.decode_steps:
            decode_run = Path(t["last_run"])

    if not args.skip_decode:
        if decode_run is None:
            steps = max(args.decode_steps, 1)
            decode_run = tmp / "decode"
            print(f"\ntraining the model to decode: {steps} steps ...", flush=True)
            out, wall = charrnn(*train_command(files, decode_run, steps, 10, args.threads), threads=args.threads)
            s = json.loads(out)
            results["decode_train"] = {"steps": s["steps"], "val_accuracy": s["val_accuracy"], "wall": wall,
                                       "train_pairs_per_sec": s["train_pairs_per_sec"]}
        info = json.loads(charrnn("info", str(decode_run), "--json", threads=args.threads)[0])
        val_acc = (info.get("metrics") or {}).get("val_accuracy")
        test = read_pairs(files["test"])[: args.test_words]
        words = tmp / "test_words.tsv"
        words.write_text("".join(f"{s}\t{' '.join(t)}\n" for s, t in test), encoding="utf-8")
        print(f"\ndecoding speed: `charrnn predict RUN WORDS` on {len(test)} test words (checkpoint of step "
              f"{info['step']}, greedy dev accuracy {'n/a' if val_acc is None else format(val_acc, '.3f')}); "
              f"words/s = words / (wall - wall on an empty file), the fastest of {args.decode_repeats} of each:", flush=True)
        p = results["decode"] = decode_speed(decode_run, words, [t for _, t in test], tmp, args.threads,
                                               args.decode_repeats)
        p["checkpoint_step"], p["val_accuracy"] = info["step"], val_acc
        print(f"  test references: {p['ref_phones_mean']:.2f} phones/word", flush=True)

    print("\n" + json.dumps(results))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
