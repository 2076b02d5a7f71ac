"""Words of a chosen language with `charrnn train --task conditional` and `sample --label`,
judged by a charrnn classifier trained on the same word lists.

    python benchmarks/conditional_words.py [--langs english,german,...] [--words 12000]
        [--samples 500] [--temperatures 0.8,1.0] [--epochs 10] [--clf-epochs 2]
        [--train-args "..."] [--clf-args "..."] [--threads 1] [--out DIR] [--quick]

Data: Debian's word lists (/usr/share/dict, packages wamerican wngerman wfrench wspanish
witalian wdutch wportuguese: `apt-get install -y wamerican wngerman ...`). Each list is
cleaned: lower-cased; only words of letters (str.isalpha: no possessives like "dog's",
no hyphens, digits or dots) of 2 to 20 characters; words found in more than one language
are dropped (the classifier could not be right on them). Every language then gives the
same number of words (--words, a seeded sample); 10% of them are held out (never given to
charrnn) to measure the classifier, the rest are the training lists. For each language L:

    charrnn train --task classify   LISTS/ --tokenizer char --epochs C [--clf-args]   the judge
    charrnn eval accuracy CLF HELD/ --json                                its held-out accuracy
    charrnn train --task conditional LISTS/ --epochs E [--train-args]     the generator
    charrnn sample GEN --label L -N 500 --seed 1 -t T --json              for each temperature T
    charrnn predict CLF SAMPLES --json                                    the judge's label

and reports, per language and on average, the share of samples the classifier assigns to
L, the share that is novel (in no language's training list) and the share that is a real
word of L held out from training (in L's cleaned list but not in the training lists).
CPU minutes are the child processes' user + system time (os.wait4). --quick: three
languages, 3000 words, one epoch each, for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DICTS = {"english": "american-english", "german": "ngerman", "french": "french", "spanish": "spanish",
         "italian": "italian", "dutch": "dutch", "portuguese": "portuguese"}
PACKAGES = {"english": "wamerican", "german": "wngerman", "french": "wfrench", "spanish": "wspanish",
            "italian": "witalian", "dutch": "wdutch", "portuguese": "wportuguese"}
HOLD_OUT = 0.1


def run_child(cmd: list[str], threads: int) -> tuple[str, float, float]:
    """Run ``cmd`` with ``threads`` OpenMP threads; its stdout, wall and CPU seconds."""
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({code}): {stderr.strip()[-2000:]}")
    return stdout, time.perf_counter() - t, usage.ru_utime + usage.ru_stime


def charrnn(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", *map(str, args)]


def clean(path: Path) -> set[str]:
    words = set()
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        w = line.strip().lower()
        if 2 <= len(w) <= 20 and w.isalpha():
            words.add(w)
    return words


def prepare(langs: list[str], per_lang: int, out: Path, seed: int) -> tuple[dict, dict, dict]:
    """(training lists, held-out words, every cleaned word) per language; the lists are
    written as OUT/train/L.txt and OUT/held/L.txt (the folder layout)."""
    missing = [lang for lang in langs if not Path("/usr/share/dict", DICTS[lang]).is_file()]
    if missing:
        pkgs = " ".join(PACKAGES[lang] for lang in missing)
        sys.exit(f"no word list for {', '.join(missing)}: apt-get install -y {pkgs}")
    full = {lang: clean(Path("/usr/share/dict", DICTS[lang])) for lang in langs}
    owners: dict[str, int] = {}
    for words in full.values():
        for w in words:
            owners[w] = owners.get(w, 0) + 1
    train, held = {}, {}
    for lang in langs:
        own = sorted(w for w in full[lang] if owners[w] == 1)
        if len(own) < per_lang:
            sys.exit(f"{lang}: only {len(own)} words of its own after cleaning, fewer than --words {per_lang}")
        chosen = random.Random(f"{seed}:{lang}").sample(own, per_lang)
        n_held = round(per_lang * HOLD_OUT)
        held[lang], train[lang] = chosen[:n_held], chosen[n_held:]
    for name, split in (("train", train), ("held", held)):
        (out / name).mkdir(parents=True, exist_ok=True)
        for lang, words in split.items():
            (out / name / f"{lang}.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    return train, held, full


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--langs", default="english,german,french,spanish,italian",
                   help=f"comma-separated, of {', '.join(DICTS)}")
    p.add_argument("--words", type=int, default=12000, help="words per language (10%% held out)")
    p.add_argument("--samples", type=int, default=500, help="samples per language and temperature")
    p.add_argument("--temperatures", default="0.8,1.0")
    p.add_argument("--epochs", type=float, default=10, help="of the conditional model")
    p.add_argument("--clf-epochs", type=float, default=2, help="of the classifier")
    p.add_argument("--clf-args", default="--hidden-size 128 --batch-size 64",
                   help="more options for the classifier's training")
    p.add_argument("--train-args", default="", help="more options for the conditional model's training")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="work directory (default: a temporary one)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    langs = a.langs.split(",")
    if a.quick:
        langs, a.words, a.epochs, a.clf_epochs, a.samples = langs[:3], 3000, 1, 1, 100
    temps = [float(t) for t in a.temperatures.split(",")]
    out = Path(a.out or tempfile.mkdtemp(prefix="conditional-words-"))
    out.mkdir(parents=True, exist_ok=True)
    train, held, full = prepare(langs, a.words, out, a.seed)
    known = set().union(*(set(w) for w in train.values()))
    hw = ["--device", "cpu", "--precision", "fp32", "--threads", a.threads, "--quiet", "--json", "--overwrite"]
    cpu = {}

    text, wall, cpu["classifier"] = run_child(charrnn(
        "train", "--task", "classify", out / "train", "--tokenizer", "char", "--epochs", a.clf_epochs, "-o",
        out / "clf", *hw, *shlex.split(a.clf_args)), a.threads)
    clf = json.loads(text)
    text, _, _ = run_child(charrnn("eval", "accuracy", out / "clf", out / "held", "--json", "--device", "cpu"),
                           a.threads)
    held_rep = json.loads(text)
    per_label = {row["label"]: row["recall"] for row in held_rep["per_label"]} if "per_label" in held_rep else {}
    print(f"classifier: val accuracy {clf['val_accuracy']:.4f}, held-out accuracy {held_rep['accuracy']:.4f} "
          f"({wall / 60:.1f} min wall, {cpu['classifier'] / 60:.1f} CPU min)", flush=True)

    text, wall, cpu["conditional"] = run_child(charrnn(
        "train", "--task", "conditional", out / "train", "--epochs", a.epochs, "-o", out / "gen", *hw,
        *shlex.split(a.train_args)), a.threads)
    gen = json.loads(text)
    print(f"conditional: val bpc {gen['val_bpc']:.4f} (loss {gen['val_loss']:.4f} nats/token) after "
          f"{gen['steps']:,} steps, {gen['params']:,} parameters ({wall / 60:.1f} min wall, "
          f"{cpu['conditional'] / 60:.1f} CPU min)", flush=True)

    results = {"classifier": {"val_accuracy": clf["val_accuracy"], "held_out_accuracy": held_rep["accuracy"],
                              "held_out_recall": per_label},
               "conditional": {k: gen[k] for k in ("val_bpc", "val_loss", "steps", "params", "epochs")},
               "samples": {}}
    cpu["sampling"] = cpu["judging"] = 0.0
    for t in temps:
        rows = {}
        for lang in langs:
            text, _, c = run_child(charrnn("sample", out / "gen", "--label", lang, "-N", a.samples, "--seed", a.seed,
                                           "-t", t, "--json", "--device", "cpu"), a.threads)
            cpu["sampling"] += c
            words = [s["text"] for s in json.loads(text)["samples"]]
            sample_file = out / f"samples-{lang}-{t}.txt"
            sample_file.write_text("".join(w + "\n" for w in words), encoding="utf-8")
            text, _, c = run_child(charrnn("predict", out / "clf", sample_file, "--json", "--device", "cpu"),
                                   a.threads)
            cpu["judging"] += c
            labels = [json.loads(line)["label"] for line in text.splitlines() if line.strip()]
            assert len(labels) == len(words), (len(labels), len(words))
            n = len(words)
            rows[lang] = {
                "as_requested": sum(lab == lang for lab in labels) / n,
                "novel": sum(w not in known for w in words) / n,
                "real_unseen": sum(w in full[lang] and w not in known for w in words) / n,
                "unique": len(set(words)) / n,
                "mean_length": sum(map(len, words)) / n,
            }
        results["samples"][str(t)] = rows
        print(f"\ntemperature {t}: {a.samples} samples per language")
        print(f"{'language':<12}{'clf recall':>11}{'as asked':>10}{'novel':>8}{'real unseen':>13}{'unique':>8}"
              f"{'length':>8}")
        for lang, r in rows.items():
            print(f"{lang:<12}{per_label.get(lang, float('nan')):>11.3f}{r['as_requested']:>10.3f}{r['novel']:>8.3f}"
                  f"{r['real_unseen']:>13.3f}{r['unique']:>8.3f}{r['mean_length']:>8.1f}")
        mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in next(iter(rows.values()))}
        print(f"{'mean':<12}{held_rep['accuracy']:>11.3f}{mean['as_requested']:>10.3f}{mean['novel']:>8.3f}"
              f"{mean['real_unseen']:>13.3f}{mean['unique']:>8.3f}{mean['mean_length']:>8.1f}")
        results["samples"][str(t)]["mean"] = mean
    results["cpu_minutes"] = {k: v / 60 for k, v in cpu.items()}
    print("\nCPU minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in cpu.items())
          + f"; total {sum(cpu.values()) / 60:.1f}")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
