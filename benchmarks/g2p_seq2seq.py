"""Grapheme to phoneme on SIGMORPHON 2021 task 1 with `charrnn train --task seq2seq`:
test WER per language and the macro average, against the shared task's published baseline.

    python benchmarks/g2p_seq2seq.py [--set medium|low] [--langs bul,dut] [--epochs 20]
        [--jobs 2] [--threads 1] [--train-args "..."] [--ablate bul,dut] [--seeds 3
        --seed-langs bul] [--r2l 2 --rescore-weights 0.3,0.5,0.7] [--data DIR] [--out DIR]
        [--mix NAME="OPTIONS" ...] [--quick] [--only-ensembles]

For each language L of the set (DIR/SET/L_{train,dev,test}.tsv, phones space-separated):

    charrnn train --task seq2seq L_train.tsv --val-file L_dev.tsv --target-tokenizer space
        --epochs E --threads T [--train-args]        (the best checkpoint: greedy dev accuracy)
    charrnn eval accuracy RUN L_test.tsv --json              greedy
    charrnn eval accuracy RUN L_test.tsv --beam 5 --json     beam 5

WER = 100 - exact-match accuracy (a word with several pronunciations is right when any
matches). Training CPU minutes are the child process's user + system time (os.wait4), so
they hold when --jobs trainings share the machine; wall minutes are given too.

--ablate LANGS trains each of those languages twice more, with --attention none and with
--no-bidirectional, and reports greedy and beam-5 test WER of each variant.

--seeds N --seed-langs LANGS (or all) trains those languages N - 1 more times with --seed
2 .. N and reports the test WER of the ensemble of the N runs (`eval accuracy RUN --ensemble
RUN2 ...`: the mean of their probabilities at each step), greedy and beam 5.

--mix NAME="OPTIONS" (repeatable, with --seed-langs) trains one more left-to-right model per
language with these options after --train-args (say --mix b32="--batch-size 32"), run
L-mix-NAME, and adds it to the ensemble: members that differ in more than the seed.

--r2l N (with --seed-langs) also trains N right-to-left models per language (--reverse-target
--seed 1 .. N, the same --train-args), then rescores: the beam-5 hypotheses of the
left-to-right ensemble and of the right-to-left ones (both beams, the default candidates) are
ranked by the mix of their log-probabilities under the two (`eval accuracy RUN --ensemble ...
--beam 5 --rescore R2L1 --rescore R2L2 --rescore-weight W`). The weight is chosen per
language on the dev set among 0 (no rescoring) and --rescore-weights; test sees only that one.

Given an --out of an earlier invocation, runs trained there with the same command are kept
(not trained again) and the ensembles are evaluated again: a cut-short benchmark continues,
and other --rescore-weights cost only the evaluations.

DIR defaults to $CHARRNN_CORPORA/g2p-sigmorphon2021, else ../shared/corpora/... next to
this checkout. Results go to OUT/results.json (OUT: a temporary directory unless --out)
and a table on stdout; RESULTS.md is written by hand from them. --quick: two languages,
one epoch, for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Published baseline test WER of SIGMORPHON 2021 task 1 (an ensembled neural transducer).
BASELINE = {
    "medium": {"arm_e": 7.00, "bul": 18.30, "dut": 14.70, "fre": 8.50, "geo": 0.00, "hbs_latn": 32.10, "hun": 1.80,
               "jpn_hira": 5.20, "kor": 16.30, "vie_hanoi": 2.50},
    "low": {"ady": 22, "gre": 21, "ice": 12, "ita": 19, "khm": 34, "lav": 55, "mlt_latn": 19, "rum": 10, "slv": 49,
            "wel_sw": 10},
}
VARIANTS = {"default": [], "no-attention": ["--attention", "none"], "unidirectional": ["--no-bidirectional"]}


def data_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    root = os.environ.get("CHARRNN_CORPORA")
    if root:
        return Path(root) / "g2p-sigmorphon2021"
    return Path(__file__).resolve().parents[2] / "shared" / "corpora" / "g2p-sigmorphon2021"


def run_child(cmd: list[str], threads: int) -> tuple[str, float, float]:
    """Run ``cmd`` with ``threads`` OpenMP threads; its stdout, wall seconds and CPU
    seconds (user + system)."""
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    return stdout, wall, usage.ru_utime + usage.ru_stime


def variant_args(variant: str) -> list[str]:
    if variant.startswith("seed"):
        return ["--seed", variant[4:]]
    if variant.startswith("r2l"):
        return ["--reverse-target", "--seed", variant[3:]]
    return VARIANTS[variant]


def parse_mix(given: list[str]) -> dict[str, list[str]]:
    """--mix NAME=OPTIONS values as {"mix-NAME": [options]}."""
    mix = {}
    for item in given:
        name, sep, options = item.partition("=")
        if not sep or not name.strip() or not options.strip():
            sys.exit(f"--mix wants NAME=OPTIONS, got {item!r}")
        mix[f"mix-{name.strip()}"] = shlex.split(options)
    return mix


def one(lang: str, variant: str, args, root: Path, out: Path, log) -> dict:
    charrnn = [sys.executable, "-m", "charrnn"]
    run = out / f"{lang}-{variant}"
    d = root / args.set
    train = charrnn + ["train", "--task", "seq2seq", str(d / f"{lang}_train.tsv"), "--val-file",
                       str(d / f"{lang}_dev.tsv"), "--target-tokenizer", "space", "--epochs", str(args.epochs),
                       "--threads", str(args.threads), "-o", str(run), "--overwrite", "--quiet", "--json",
                       *shlex.split(args.train_args),
                       *(args.mix[variant] if variant in args.mix else variant_args(variant))]
    done = args.done.get((lang, variant))
    if done is not None and done["command"] == shlex.join(train[2:]) and (run / "best.safetensors").is_file():
        return done  # trained by an earlier invocation with the same command: kept, not logged again
    summary_text, wall, cpu = run_child(train, args.threads)
    summary = json.loads(summary_text)
    result = {"lang": lang, "variant": variant, "baseline": BASELINE[args.set].get(lang), "train_wall_s": wall,
              "train_cpu_s": cpu, "steps": summary["steps"], "best_step": summary["best_step"],
              "val_accuracy": summary["val_accuracy"], "train_pairs_per_sec": summary["train_pairs_per_sec"],
              "command": shlex.join(train[2:])}
    for beam in (0, 5):
        text, secs, _ = run_child(charrnn + ["eval", "accuracy", str(run), str(d / f"{lang}_test.tsv"), "--json",
                                             "--beam", str(beam)], args.threads)
        rep = json.loads(text)
        result[f"wer_beam{beam}"] = rep["wer"]
        result[f"ter_beam{beam}"] = rep["ter"]
        result[f"eval_s_beam{beam}"] = secs
    log(result)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=sorted(BASELINE), default="medium")
    p.add_argument("--langs", help="comma-separated languages (default: all of the set)")
    p.add_argument("--epochs", type=float, default=20)
    p.add_argument("--jobs", type=int, default=2, help="trainings at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training")
    p.add_argument("--train-args", default="", help="more options for charrnn train")
    p.add_argument("--ablate", default="", help="comma-separated languages to also train without attention and "
                                                "with a unidirectional encoder")
    p.add_argument("--seeds", type=int, default=1, help="runs per --seed-langs language, for an ensemble")
    p.add_argument("--seed-langs", default="", help="comma-separated languages to train --seeds times ('all': "
                                                    "every language of the run)")
    p.add_argument("--only-ensembles", action="store_true", help="train only the extra seeds (the default runs "
                                                                  "are already in --out) and evaluate the ensembles")
    p.add_argument("--r2l", type=int, default=0, help="right-to-left models per --seed-langs language, to rescore "
                                                       "the ensemble's beam")
    p.add_argument("--mix", action="append", default=[], metavar="NAME=OPTIONS",
                   help="one more ensemble member per --seed-langs language, trained with these options")
    p.add_argument("--rescore-weights", default="0.3,0.5,0.7", help="rescoring weights tried on dev")
    p.add_argument("--data")
    p.add_argument("--out")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    args.mix = parse_mix(args.mix)
    root = data_dir(args.data)
    langs = args.langs.split(",") if args.langs else sorted(BASELINE[args.set])
    if args.quick:
        langs, args.epochs = langs[:2], 1
    unknown = [lang for lang in langs if not (root / args.set / f"{lang}_train.tsv").is_file()]
    if unknown:
        sys.exit(f"no data for {', '.join(unknown)} in {root / args.set}")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="g2p-"))
    out.mkdir(parents=True, exist_ok=True)
    previous = []
    if (out / "results.json").is_file():  # an invocation over an earlier one's --out keeps its runs
        previous = [r for r in json.loads((out / "results.json").read_text())
                    if not r["variant"].startswith("ensemble")]  # ensembles are evaluated again
    # A run whose training command is unchanged and whose checkpoint is there is not trained again.
    args.done = {(r["lang"], r["variant"]): r for r in previous if "command" in r}
    seed_langs = langs if args.seed_langs == "all" else list(filter(None, args.seed_langs.split(",")))
    jobs = [] if args.only_ensembles else [(lang, "default") for lang in langs]
    jobs += [(lang, v) for lang in filter(None, args.ablate.split(",")) for v in VARIANTS if v != "default"]
    # Seed by seed over the languages: a run cut short still has ensembles of fewer seeds everywhere.
    extra = [[(lang, f"seed{i}") for lang in seed_langs] for i in range(2, args.seeds + 1)]
    r2l = [[(lang, f"r2l{i}") for lang in seed_langs] for i in range(1, args.r2l + 1)]
    for i in range(max(len(extra), len(r2l))):  # alternate the two kinds, seed by seed
        jobs += (r2l[i] if i < len(r2l) else []) + (extra[i] if i < len(extra) else [])
    jobs += [(lang, name) for name in args.mix for lang in seed_langs]
    lock = threading.Lock()
    results: list[dict] = previous

    def log(r: dict) -> None:
        with lock:
            results.append(r)
            print(f"{r['lang']:>9} {r['variant']:<14} WER greedy {r['wer_beam0']:6.2f} beam5 {r['wer_beam5']:6.2f} "
                  f"(baseline {r['baseline']}) TER {r['ter_beam5']:5.2f} train {r['train_cpu_s'] / 60:5.1f} CPU min "
                  f"{r['train_wall_s'] / 60:5.1f} wall min, {r['steps']} steps", flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(one, lang, v, args, root, out, log) for lang, v in jobs]:
            f.result()
    weights = [0.0] + [float(w) for w in args.rescore_weights.split(",") if float(w) > 0]

    def accuracy(lang: str, split: str, runs: list[str], beam: int, rescore: list[str] = (), weight: float = 0.5):
        cmd = [sys.executable, "-m", "charrnn", "eval", "accuracy", runs[0], str(root / args.set / f"{lang}_{split}.tsv"),
               "--json", "--beam", str(beam)]
        for r in runs[1:]:
            cmd += ["--ensemble", r]
        if rescore and weight > 0:
            cmd += [a for r in rescore for a in ("--rescore", r)] + ["--rescore-weight", str(weight)]
        return json.loads(run_child(cmd, args.threads)[0])

    def ensemble(lang: str) -> dict:
        runs = [str(out / f"{lang}-default")] + [str(out / f"{lang}-seed{i}") for i in range(2, args.seeds + 1)]
        runs += [str(out / f"{lang}-{name}") for name in args.mix]
        ens = {"lang": lang, "variant": f"ensemble of {len(runs)}", "baseline": BASELINE[args.set].get(lang)}
        for beam in (0, 5):
            rep = accuracy(lang, "test", runs, beam)
            ens[f"wer_beam{beam}"], ens[f"ter_beam{beam}"] = rep["wer"], rep["ter"]
        if args.r2l:
            rescore = [str(out / f"{lang}-r2l{i}") for i in range(1, args.r2l + 1)]
            # The weight is chosen on dev (lowest WER, then lowest TER); test sees only that one.
            dev = {w: accuracy(lang, "dev", runs, 5, rescore, w) for w in weights}
            best = min(weights, key=lambda w: (dev[w]["wer"], dev[w]["ter"]))
            rep = accuracy(lang, "test", runs, 5, rescore, best) if best > 0 else {"wer": ens["wer_beam5"],
                                                                                    "ter": ens["ter_beam5"]}
            ens.update(rescore_weight=best, dev_wer_by_weight={str(w): dev[w]["wer"] for w in weights},
                       wer_rescored=rep["wer"], ter_rescored=rep["ter"])
        with lock:
            results.append(ens)
            print(f"{lang:>9} {ens['variant']:<14} WER greedy {ens['wer_beam0']:6.2f} beam5 {ens['wer_beam5']:6.2f} "
                  + (f"rescored {ens['wer_rescored']:6.2f} (weight {ens['rescore_weight']}) " if args.r2l else "")
                  + f"(baseline {ens['baseline']})", flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
        return ens

    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(ensemble, lang) for lang in seed_langs]:
            f.result()
    default = sorted((r for r in results if r["variant"] == "default"), key=lambda r: r["lang"])
    print(f"\n{'language':>9} {'baseline':>8} {'greedy':>7} {'beam 5':>7} {'CPU min':>8}")
    for r in default:
        print(f"{r['lang']:>9} {r['baseline']:8.2f} {r['wer_beam0']:7.2f} {r['wer_beam5']:7.2f} "
              f"{r['train_cpu_s'] / 60:8.1f}")
    if default:
        n = len(default)
        print(f"{'macro':>9} {sum(r['baseline'] for r in default) / n:8.2f} "
              f"{sum(r['wer_beam0'] for r in default) / n:7.2f} {sum(r['wer_beam5'] for r in default) / n:7.2f} "
              f"{sum(r['train_cpu_s'] for r in default) / 60 / n:8.1f}")
    ensembles = sorted((r for r in results if r["variant"].startswith("ensemble")), key=lambda r: r["lang"])
    if ensembles:  # CPU minutes: every run of the language's ensemble (and its right-to-left models) together
        rescored = all("wer_rescored" in e for e in ensembles)
        print(f"\n{'language':>9} {'baseline':>8} {'ensemble greedy':>16} {'beam 5':>7}"
              + (f" {'rescored':>9} {'weight':>6}" if rescored else "") + f" {'CPU min':>8}")
        cpu = {e["lang"]: sum(r["train_cpu_s"] for r in results if r["lang"] == e["lang"] and "train_cpu_s" in r
                               and (r["variant"] == "default" or r["variant"].startswith(("seed", "r2l", "mix-")))) / 60
               for e in ensembles}
        for e in ensembles:
            print(f"{e['lang']:>9} {e['baseline']:8.2f} {e['wer_beam0']:16.2f} {e['wer_beam5']:7.2f}"
                  + (f" {e['wer_rescored']:9.2f} {e['rescore_weight']:6.1f}" if rescored else "")
                  + f" {cpu[e['lang']]:8.1f}")
        n = len(ensembles)
        print(f"{'macro':>9} {sum(e['baseline'] for e in ensembles) / n:8.2f} "
              f"{sum(e['wer_beam0'] for e in ensembles) / n:16.2f} {sum(e['wer_beam5'] for e in ensembles) / n:7.2f}"
              + (f" {sum(e['wer_rescored'] for e in ensembles) / n:9.2f} {'':>6}" if rescored else "")
              + f" {sum(cpu.values()) / n:8.1f}")
    print(f"\n{len(results)} trainings in {(time.perf_counter() - t0) / 60:.1f} min wall; results in "
          f"{out / 'results.json'}")


if __name__ == "__main__":
    main()
