"""Make the task compatibility fixture: one tiny checkpoint per task and what it gave.

Generated from commit 281c1a5c88c6431f265b016d303e86a4dee4d953 (charrnn 0.1.0, torch
2.x on a CPU), the last commit before the package refactor; ``expected.json`` records
the commit, the versions and the date under "generated_from". tests/test_compat_tasks.py
loads these checkpoints with the code of the day and checks it still gives these outputs.

Each of the five tasks (lm, classify, tag, seq2seq, conditional) is trained for a few
seconds by the command line (``python -m charrnn train --task ...``: 1 layer, hidden size
16, embedding 8, fixed seed, one CPU thread) on the tiny data written below. Only its
``best.safetensors`` is kept, as ``<task>.safetensors``. Then ``record`` runs each
checkpoint through the Python API (``charrnn.load(path, device="cpu")``) and ``info``
keeps the key fields of ``charrnn info --json``; both go into ``expected.json``.

Run it with the code to freeze, never with a half-edited tree; it refuses a charrnn
package with uncommitted changes:

    git worktree add /tmp/fixture-wt <commit>
    PYTHONPATH=/tmp/fixture-wt python tests/data/release-0.1.0-tasks/make.py
    git worktree remove --force /tmp/fixture-wt

Regenerating replaces the fixture: do it only on purpose (a deliberate format change).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from itertools import product
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = ("lm", "classify", "tag", "seq2seq", "conditional")

# ----------------------------------------------------------------- the tiny data sets

LM_TEXT = ("the cat sat on the mat. the dog sat on the log.\n"
           "a cat and a dog met on a mat by a log.\n"
           "the dog and the cat ran to the mat.\n") * 8

POS, NEG = ["good", "great", "fine", "lovely", "warm", "happy"], ["bad", "awful", "dull", "poor", "cold", "sad"]
CLASSIFY = [(f"{start} {w}", label) for start in ("the film was", "a very", "so", "what a")
            for ws, label in ((POS, "pos"), (NEG, "neg")) for w in ws]  # 48 examples

NOUNS, VERBS, ADJS = ["cat", "dog", "bird", "fish"], ["runs", "sleeps", "eats"], ["big", "red", "old"]
TAGGED = [[(d, "DET"), *([(a, "ADJ")] if a else []), (n, "NOUN"), (v, "VERB"), (".", "PUNCT")]
          for d, a, n, v in product(["the", "a"], [None, *ADJS], NOUNS, VERBS)][::2]  # 48 sentences

PAIRS = [(s, s[::-1]) for n in (2, 3) for s in map("".join, product("abcd", repeat=n))]  # 80: reverse a string

LABELLED_WORDS = {"am": ["bad", "cab", "deck", "face", "gala", "hike", "jade", "lime", "mead", "bike", "dime",
                         "fade", "glad", "kale", "lamb", "made", "beam", "cage", "hail", "jam"],
                  "nz": ["nut", "oops", "pun", "quo", "rust", "stow", "tour", "vow", "wry", "yurt", "zoo", "sun",
                         "ton", "rot", "sour", "pout", "tonus", "worn", "runt", "now"]}  # letters a-m, n-z

# ----------------------------------------------------------------- training

COMMON = ["--layers", "1", "--hidden-size", "16", "--embedding-dim", "8", "--lr", "0.01", "--warmup-steps", "5",
          "--seed", "1", "--threads", "1", "--device", "cpu", "--precision", "fp32", "--quiet", "--json"]
TRAIN = {  # task: (data file, its content, options of its own)
    "lm": ("lm.txt", LM_TEXT, ["--batch-size", "4", "--bptt", "16", "--max-steps", "200", "--eval-interval", "100"]),
    "classify": ("classify.tsv", "text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in CLASSIFY),
                 ["--batch-size", "8", "--max-steps", "100", "--eval-interval", "50"]),
    "tag": ("tag.tsv", "\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in TAGGED),
            ["--char-hidden-size", "8", "--char-embedding-dim", "6", "--batch-size", "8", "--max-steps", "80",
             "--eval-interval", "40"]),
    "seq2seq": ("seq2seq.tsv", "".join(f"{s}\t{t}\n" for s, t in PAIRS),
                ["--batch-size", "8", "--max-steps", "300", "--eval-interval", "150"]),
    "conditional": ("conditional.tsv", "word\tlabel\n" + "".join(f"{w}\t{l}\n" for l, ws in LABELLED_WORDS.items()
                                                                  for w in ws),
                    ["--label-dim", "4", "--batch-size", "8", "--max-steps", "200", "--eval-interval", "100"]),
}


def train(task: str, work: Path) -> Path:
    """Train ``task`` on its tiny data in ``work``; return its best checkpoint."""
    name, content, options = TRAIN[task]
    data = work / name
    data.write_text(content, encoding="utf-8")
    run = work / f"{task}-run"
    subprocess.run([sys.executable, "-m", "charrnn", "train", "--task", task, str(data), "--out", str(run),
                    *COMMON, *options], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "OMP_NUM_THREADS": "1"})
    return run / "best.safetensors"


# ----------------------------------------------------------------- what is recorded

LM_PRIME, LM_EVAL = "the ", "the dog sat on a mat by the cat.\n"
CLASSIFY_TEXTS = ["the film was lovely", "so dull", "what a cold film", ""]
TAG_SENTENCES = [["the", "big", "cat", "runs", "."], ["A", "dog", "sleeps", "."], ["the", "blue", "fox", "jumps"]]
TAG_GOLD = [["DET", "ADJ", "NOUN", "VERB", "PUNCT"], ["DET", "NOUN", "VERB", "PUNCT"], ["DET", "ADJ", "NOUN", "VERB"]]
SEQ2SEQ_SOURCES = ["abc", "dca", "bbad"]
CONDITIONAL_TEXTS = (["bead", "rust", "zest"], ["am", "nz", "nz"])


def gens(generations) -> list[dict]:
    """Generations as plain dicts: text, logprob, tokens (a count), finish_reason, score (beam)."""
    return [g.as_dict() for g in generations]


def record(task: str, model) -> dict:
    """The outputs of a loaded checkpoint of ``task`` that the fixture keeps (JSON-ready)."""
    if task == "lm":
        return {"greedy": model.generate(LM_PRIME, length=40, greedy=True),
                "sampled": model.generate(LM_PRIME, length=40, temperature=0.9, seed=7),
                "beam": gens(model.sample(LM_PRIME, beam=2, num_return=2, length=12)),
                "evaluate": model.evaluate(LM_EVAL, streams=1).as_dict()}
    if task == "classify":
        return {"labels": model.labels,
                "predict": model.predict(CLASSIFY_TEXTS, top_k=2),
                "evaluate": model.evaluate(CLASSIFY_TEXTS[:3], ["pos", "neg", "neg"]).as_dict()}
    if task == "tag":
        return {"tags": model.tags,
                "unseen": [model.unseen(s) for s in TAG_SENTENCES],
                "predict": model.predict(TAG_SENTENCES),
                "evaluate": model.evaluate(TAG_SENTENCES, TAG_GOLD).as_dict()}
    if task == "seq2seq":
        return {"greedy": model.predict(SEQ2SEQ_SOURCES),
                "beam": model.predict(SEQ2SEQ_SOURCES, beam=3, n_best=2),
                "evaluate": model.evaluate(SEQ2SEQ_SOURCES, [[s[::-1]] for s in SEQ2SEQ_SOURCES]).as_dict(),
                "perplexity": model.perplexity(SEQ2SEQ_SOURCES, [s[::-1] for s in SEQ2SEQ_SOURCES])}
    if task == "conditional":
        out = {"labels": model.labels}
        for label in model.labels:
            greedy = model.sample(label, n=1, greedy=True)
            out[label] = {"greedy": gens(greedy), "novel": model.is_novel(greedy[0].text),
                          "sampled": gens(model.sample(label, n=3, temperature=0.8, seed=5))}
        out["perplexity"] = model.perplexity(*CONDITIONAL_TEXTS).as_dict()
        return out
    raise ValueError(task)


INFO_KEYS = ("task", "params", "model_config")


def info(path: Path) -> dict:
    """The key fields of ``charrnn info PATH --json``."""
    out = subprocess.run([sys.executable, "-m", "charrnn", "info", str(path), "--json"], check=True,
                         capture_output=True, text=True).stdout
    return {k: json.loads(out)[k] for k in INFO_KEYS}


def as_json(value):
    """Tuples as lists, as they come back from expected.json."""
    return json.loads(json.dumps(value))


def main() -> None:
    import charrnn
    import torch

    torch.set_num_threads(1)  # as the tests run (conftest.py)
    package = Path(charrnn.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=package, check=True, capture_output=True, text=True).stdout

    if git("status", "--porcelain", "--", ".").strip():
        sys.exit(f"{package} has uncommitted changes: make the fixture from a clean checkout (a git worktree)")
    expected = {"generated_from": {"commit": git("rev-parse", "HEAD").strip(), "charrnn": charrnn.__version__,
                                   "torch": torch.__version__, "date": datetime.date.today().isoformat()}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            path = HERE / f"{task}.safetensors"
            shutil.copyfile(train(task, Path(tmp)), path)
            expected[task] = {"info": info(path), "outputs": as_json(record(task, charrnn.load(path, device="cpu")))}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(expected, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
