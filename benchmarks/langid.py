"""Which language is this word? charrnn's classifier against character n-gram logistic
regression, the classical model that is hardest to beat on short strings (issue 37).

    python benchmarks/langid.py [--words 6000] [--budget 140] [--threads 2] [--seeds 1 2 3]
                                [--train-args "..."] [--write]

Data: Debian's word lists of seven languages (conditional_words.py's packages and
cleaning: lower-cased words of 2-20 letters; a word found in more than one language is
dropped, since nothing could be right on it), --words a language, split 80 / 10 / 10 into
train, dev and test by a fixed seed; written as folders of one file per language.

- Baseline, in this process: TF-IDF of character 1-5-grams within word boundaries
  (scikit-learn's ``char_wb``, sublinear tf) and a multinomial logistic regression, its C
  chosen on dev from 0.3 to 300, refitted on train, scored once on test.
- charrnn, one run a seed: ``charrnn train --task classify train/ --val-file dev/
  --time-budget B --threads T --seed S``, then ``charrnn eval accuracy RUN test/``. The
  CPU seconds are the training process's user + system time (os.wait4): with 2 threads a
  140 s budget stays within 5 CPU minutes, start-up and the final evaluation included.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, record  # noqa: E402
from conditional_words import DICTS, PACKAGES, charrnn, clean, run_child  # noqa: E402

SPLITS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def prepare(per_lang: int, out: Path) -> dict[str, dict[str, list[str]]]:
    """split -> language -> words, written as OUT/<split>/<language>.txt."""
    missing = [lang for lang in DICTS if not Path("/usr/share/dict", DICTS[lang]).is_file()]
    if missing:
        sys.exit(f"no word list for {', '.join(missing)}: apt-get install -y {' '.join(PACKAGES[m] for m in missing)}")
    full = {lang: clean(Path("/usr/share/dict", name)) for lang, name in DICTS.items()}
    owners: dict[str, int] = {}
    for words in full.values():
        for w in words:
            owners[w] = owners.get(w, 0) + 1
    data: dict[str, dict[str, list[str]]] = {name: {} for name in SPLITS}
    for lang, words in full.items():
        own = sorted(w for w in words if owners[w] == 1)
        chosen = random.Random(f"langid:{lang}").sample(own, min(per_lang, len(own)))
        a = round(len(chosen) * SPLITS["train"])
        b = a + round(len(chosen) * SPLITS["dev"])
        data["train"][lang], data["dev"][lang], data["test"][lang] = chosen[:a], chosen[a:b], chosen[b:]
    for split, langs in data.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for lang, words in langs.items():
            (out / split / f"{lang}.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    return data


def flat(split: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    pairs = [(w, lang) for lang, words in split.items() for w in words]
    return [w for w, _ in pairs], [lang for _, lang in pairs]


def baseline(data) -> dict:
    """Character n-gram logistic regression: C on dev, test once."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0, c0 = time.perf_counter(), time.process_time()
    (xtr, ytr), (xdev, ydev), (xte, yte) = flat(data["train"]), flat(data["dev"]), flat(data["test"])
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True, min_df=1)
    ftr, fdev, fte = vec.fit_transform(xtr), None, None
    fdev, fte = vec.transform(xdev), vec.transform(xte)
    dev_scores = {}
    for c in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(ftr, ytr)
        dev_scores[c] = float((model.predict(fdev) == ydev).mean())
    best = max(dev_scores, key=dev_scores.get)
    model = LogisticRegression(C=best, max_iter=2000).fit(ftr, ytr)
    test = float((model.predict(fte) == yte).mean())
    return {"test": test, "dev": dev_scores[best], "C": best, "dev_by_C": dev_scores, "features": ftr.shape[1],
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def run_charrnn(root: Path, seed: int, budget: float, threads: int, extra: list[str]) -> dict:
    run = root / f"run-{budget:g}-{seed}"
    out, wall, cpu = run_child(charrnn("train", "--task", "classify", root / "train", "--val-file", root / "dev",
                                       "--time-budget", budget, "--threads", threads, "--seed", seed, "--out", run,
                                       "--json", *extra), threads)
    summary = json.loads(out)
    acc, _, _ = run_child(charrnn("eval", "accuracy", run, root / "test", "--json", "--threads", threads), threads)
    result = json.loads(acc)
    return {"seed": seed, "budget": budget, "test": result["accuracy"], "train_wall_s": wall, "train_cpu_s": cpu,
            "dev": summary.get("val_accuracy"), "steps": summary.get("steps"),
            "epochs": summary.get("epochs", summary.get("epoch")),
            "stopped_early": summary.get("stopped_early"), "params": summary.get("params")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=6000, help="words a language (before the split)")
    ap.add_argument("--budget", type=float, nargs="+", default=[140.0],
                    help="charrnn's --time-budget, seconds (several: each seed at each, the ladder of issue 37)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--train-args", default="", help="more options for charrnn train")
    ap.add_argument("--write", action="store_true", help="append the table to RESULTS.md")
    ap.add_argument("--skip-baseline", action="store_true", help="charrnn only (trying options); implies no --write")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = prepare(args.words, root)
        base = {"test": float("nan"), "dev": float("nan"), "C": None, "features": 0, "seconds": 0.0,
                "cpu_seconds": 0.0} if args.skip_baseline else baseline(data)
        print(f"baseline: test {base['test']:.4f} (dev {base['dev']:.4f}, C {base['C']}), {base['seconds']:.0f} s",
              file=sys.stderr)
        runs = []
        for budget in args.budget:
            for seed in args.seeds:
                runs.append(run_charrnn(root, seed, budget, args.threads, shlex.split(args.train_args)))
                r = runs[-1]
                print(f"charrnn {budget:g} s seed {seed}: test {r['test']:.4f}, {r['train_cpu_s']:.0f} CPU s",
                      file=sys.stderr)
    sizes = {split: sum(len(w) for w in langs.values()) for split, langs in data.items()}
    rows = [f"{len(DICTS)} languages ({', '.join(DICTS)}); words train / dev / test: "
            f"{sizes['train']:,} / {sizes['dev']:,} / {sizes['test']:,}", "",
            "| model | test accuracy | dev accuracy | training | CPU seconds |", "|---|---|---|---|---|",
            f"| character 1-5-gram TF-IDF + logistic regression (C {base['C']} on dev, {base['features']:,} features) "
            f"| {base['test']:.4f} | {base['dev']:.4f} | {base['seconds']:.0f} s, every C | "
            f"{base['cpu_seconds']:.0f} |"]
    for r in runs:
        early = ", stopped early" if r["stopped_early"] else ""
        dev = f"{r['dev']:.4f}" if isinstance(r["dev"], float) else "-"
        epochs = f"{r['epochs']:.1f}" if isinstance(r["epochs"], (int, float)) else "-"
        options = f"--time-budget {r['budget']:g} {args.train_args}".strip()
        rows.append(f"| charrnn `{options}`, seed {r['seed']} | "
                    f"{r['test']:.4f} | {dev} | {r['train_wall_s']:.0f} s, {epochs} epochs{early} | "
                    f"{r['train_cpu_s']:.0f} |")
    rows.append("")
    for budget in args.budget:
        tests = [r["test"] for r in runs if r["budget"] == budget]
        rows.append(f"- {budget:g} s: charrnn mean {statistics.mean(tests):.4f} over {len(tests)} seeds (min "
                    f"{min(tests):.4f}) against {base['test']:.4f}: **{'above' if min(tests) > base['test'] else 'not above'}"
                    f"** the baseline in every seed")
    record(f"Language identification of single words: charrnn against character n-grams ({args.threads} threads)",
           command_line(), "\n".join(rows), {"benchmark": "langid", "baseline": base, "charrnn": runs,
                                             "words": sizes, "budgets_s": args.budget},
           write=args.write and not args.skip_baseline)


if __name__ == "__main__":
    main()
