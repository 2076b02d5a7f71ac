"""``charrnn plot`` (curves from metrics.jsonl) and ``charrnn train --tensorboard``, on tiny
runs of every task: a few steps of a 1x8 model on one CPU thread, trained once per module."""

from __future__ import annotations

import json
import math
import random
import struct
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from charrnn.checkpoint import read_metrics
from charrnn.cli.plot import curves, run_names
from charrnn.cli.tensorboard import scalars
from charrnn.training.events import Event
from conftest import TINY_TEXT
from test_cli import assert_one_line_error
from test_cli_seq2seq import cli, ok

HW = ["--device", "cpu", "--precision", "fp32", "--threads", "1", "--quiet"]
# A few steps, an evaluation every 3 (two in all) and a record every 2.
SHORT = ["--max-steps", "6", "--eval-interval", "3", "--log-interval", "2", "--batch-size", "4", *HW]
TASKS = ("lm", "classify", "tag", "seq2seq", "conditional")


def _data(base: Path) -> dict[str, list]:
    """For each task: its corpus and tiny model options."""
    rng = random.Random(0)
    (base / "tiny.txt").write_text(TINY_TEXT, encoding="utf-8")
    (base / "labelled.tsv").write_text("text\tlabel\n" + "".join(
        f"{''.join(rng.choice('abc') for _ in range(3))}\ta\n{''.join(rng.choice('xyz') for _ in range(3))}\tz\n"
        for _ in range(20)), encoding="utf-8")
    sentences = [[("le", "DET"), (rng.choice(["kota", "mesa"]), "NOUN"), (rng.choice(["boti", "kemi"]), "VERB"),
                  (".", "PUNCT")] for _ in range(30)]
    (base / "tagged.tsv").write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n",
                                     encoding="utf-8")
    sources = ["".join(rng.choice("abcd") for _ in range(rng.randint(2, 4))) for _ in range(60)]
    (base / "pairs.tsv").write_text("".join(f"{s}\t{' '.join(reversed(s))}\n" for s in sources), encoding="utf-8")
    small = ["--hidden-size", "8", "--embedding-dim", "4"]
    return {
        "lm": [base / "tiny.txt", *small, "--layers", "1", "--bptt", "8"],
        "classify": ["--task", "classify", base / "labelled.tsv", *small],
        "tag": ["--task", "tag", base / "tagged.tsv", *small, "--char-hidden-size", "4", "--char-embedding-dim", "4"],
        "seq2seq": ["--task", "seq2seq", base / "pairs.tsv", "--target-tokenizer", "space", *small],
        "conditional": ["--task", "conditional", base / "labelled.tsv", *small, "--label-dim", "2"],
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("plot")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        yield base


@pytest.fixture(scope="module")
def runs(base):
    """A tiny run of every task, each also writing TensorBoard events: {task: (run, events)}."""
    data = _data(base)
    out = {}
    for task in TASKS:
        run, events = base / "runs" / task, base / "tb" / task
        ok("train", *data[task], *SHORT, "-o", run, "--tensorboard", events)
        out[task] = run, events
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert ET.fromstring(text.encode()).tag.endswith("svg")
    return text


def scalar_events(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def next_second() -> None:
    """Event files are read in the order of their names, which start with the second they
    were opened in: runs of one test process (one pid) must not share a second."""
    time.sleep(1.01 - time.time() % 1)


def logged(run: Path, event: str, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in read_metrics(run / "metrics.jsonl") if r.get("event") == event and key in r]


def same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """The same steps and values (TensorBoard keeps float32; NaN equals NaN)."""
    return len(a) == len(b) and all(s == t and (math.isclose(x, y, rel_tol=1e-6) or math.isnan(x) and math.isnan(y))
                                    for (s, x), (t, y) in zip(a, b))


# ----------------------------------------------------------------- plot


@pytest.mark.parametrize("task", TASKS)
def test_a_png_of_each_task(runs, tmp_path, task):
    code, out, err = cli("plot", runs[task][0], "-o", tmp_path / "curves.png")
    assert code == 0 and out == "" and err.strip() == f"charrnn: wrote {tmp_path / 'curves.png'}"
    width, height = png_size(tmp_path / "curves.png")
    assert width > 600 and height > 400


def test_every_task_in_one_svg_names_each_run(runs, tmp_path):
    ok("plot", *(runs[t][0] for t in TASKS), "-o", tmp_path / "all.svg")
    text = svg_text(tmp_path / "all.svg")
    for label in (*TASKS, "bits per character", "loss (nats per token)", "validation accuracy", "learning rate",
                  "tokens/s", "examples/s", "pairs/s", "training", "validation"):
        assert f">{label}<" in text or label in text, label


def test_runs_with_the_same_directory_name_are_told_apart(runs, tmp_path):
    for parent in ("a", "b"):
        (tmp_path / parent / "run").mkdir(parents=True)
        (tmp_path / parent / "run" / "metrics.jsonl").write_bytes((runs["lm"][0] / "metrics.jsonl").read_bytes())
    ok("plot", tmp_path / "a" / "run", tmp_path / "b" / "run" / "metrics.jsonl", "-o", tmp_path / "two.svg")
    text = svg_text(tmp_path / "two.svg")
    assert "a/run" in text and "b/run" in text
    assert run_names([Path("x/a/run"), Path("y/b/run"), Path("z/solo"), Path("z/solo")]) == [
        "a/run", "b/run", "solo", "solo (2)"]


def test_json_summary_on_stdout(runs, tmp_path):
    code, out, err = cli("plot", runs["lm"][0], runs["classify"][0], "-o", tmp_path / "c.pdf", "--json")
    assert code == 0 and (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-" and "wrote" in err
    summary = json.loads(out)
    lm, classify = summary["runs"]
    assert lm["name"] == "lm" and lm["steps"] == 6 and lm["eval_records"] == 2 and "val_bpc" in lm["best"]
    assert classify["best"]["val_accuracy"] == max(v for _, v in logged(runs["classify"][0], "eval", "val_accuracy"))


def test_resumed_logs_are_continuous_and_keep_the_last_record_of_a_step():
    records = [
        {"event": "train", "step": 2, "time": 1.0, "train_loss": 3.0},
        {"event": "eval", "step": 4, "time": 2.5, "val_loss": 2.9},
        {"event": "train", "step": 6, "time": 3.0, "train_loss": 2.8},
        {"event": "interrupted", "step": 6, "signal": 2},
        # resumed from step 4 by a process whose clock started again
        {"event": "train", "step": 6, "time": 0.5, "train_loss": 2.7},
        {"event": "eval", "step": 8, "time": 1.0, "val_loss": 2.6},
        "not a record", {"event": "train", "step": "8"},
    ]
    train, evals = curves([r for r in records if isinstance(r, dict)])
    assert [(r["step"], r["train_loss"], r["wall"]) for r in train] == [(2, 3.0, 1.0), (6, 2.7, 3.5)]
    assert [(r["step"], r["wall"]) for r in evals] == [(4, 2.5), (8, 4.0)]


def test_a_real_resume_keeps_the_clock(runs, base):
    """The checkpoint carries the elapsed time, so a resumed run's times go on increasing."""
    run = base / "resumed"
    data = _data(base)
    ok("train", *data["lm"], *SHORT, "-o", run, "--tensorboard", base / "tb" / "resumed")
    next_second()
    ok("train", data["lm"][0], "--resume", "--max-steps", "10", *HW, "-o", run, "--tensorboard", base / "tb" / "resumed")
    times = [r["time"] for r in read_metrics(run / "metrics.jsonl")]
    assert times == sorted(times) and len(times) > 6
    assert same(scalar_events(base / "tb" / "resumed")["train/loss"], logged(run, "train", "train_loss"))


@pytest.mark.parametrize("content", [None, "", "{\"event\": \"interrupted\", \"step\": 3}\nnot json\n"])
def test_a_directory_without_records_is_one_line(tmp_path, content):
    (tmp_path / "run").mkdir()
    if content is not None:
        (tmp_path / "run" / "metrics.jsonl").write_text(content)
    assert_one_line_error(*cli("plot", tmp_path / "run", "-o", tmp_path / "c.png"), str(tmp_path / "run"))
    assert_one_line_error(*cli("plot", tmp_path / "nowhere", "-o", tmp_path / "c.png"), "no such run directory")
    assert not (tmp_path / "c.png").exists()


def test_a_bad_extension_is_refused_before_reading_runs(tmp_path):
    code, out, err = cli("plot", tmp_path / "nowhere", "-o", tmp_path / "curves.jpg")
    assert code == 1
    assert_one_line_error(code, out, err, ".png, .svg, .pdf")
    assert_one_line_error(*cli("plot", tmp_path / "nowhere", "-o", tmp_path / "no" / "c.png"), "no such directory")


def test_without_matplotlib_one_line_names_the_extra(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    code, out, err = cli("plot", runs["lm"][0], "-o", tmp_path / "c.png")
    assert code == 1
    assert_one_line_error(code, out, err, "pip install 'charrnn[plot]'")
    assert not (tmp_path / "c.png").exists()


# ----------------------------------------------------------------- tensorboard


@pytest.mark.parametrize("task", TASKS)
def test_tensorboard_holds_what_metrics_jsonl_holds(runs, task):
    run, events = runs[task]
    tags = scalar_events(events)
    headline = "val/bpc" if task in ("lm", "conditional") else "val/accuracy"
    rate = {"classify": "examples_per_sec", "seq2seq": "pairs_per_sec"}.get(task, "tokens_per_sec")
    for tag, event, key in [("train/loss", "train", "train_loss"), ("train/lr", "train", "lr"),
                            ("train/epoch", "train", "epoch"), (f"train/{rate}", "train", rate),
                            ("val/loss", "eval", "val_loss"), (headline, "eval", "val_" + headline[4:])]:
        assert same(tags[tag], logged(run, event, key)), tag
    assert [s for s, _ in tags["val/loss"]] == [3, 6] and [s for s, _ in tags["train/loss"]] == [2, 4, 6]
    assert ("train/bpc" in tags) == (task == "lm")
    assert "tensorboard" not in (run / "config.toml").read_text()  # an output place, not part of the run


def test_tensorboard_resume_and_overwrite_purge_stale_events(base):
    from torch.utils.tensorboard import SummaryWriter

    data, run, events = _data(base), base / "purged", base / "tb" / "purged"
    ok("train", *data["classify"], *SHORT, "-o", run, "--tensorboard", events)
    # A process that died after logging step 8 (past its last save at step 6); its file
    # is named to be read after the run's own.
    with SummaryWriter(str(events)) as stale:
        stale.add_scalar("train/loss", 99.0, 8)
    first = min(events.glob("events.out.tfevents.*"))
    max(events.glob("events.out.tfevents.*")).rename(f"{first}.stale")
    next_second()
    ok("train", data["classify"][2], "--task", "classify", "--resume", "--max-steps", "9", *HW, "-o", run,
       "--tensorboard", events)
    assert same(scalar_events(events)["train/loss"], logged(run, "train", "train_loss"))
    # A new run over the old one: the old events are not drawn as part of it.
    next_second()
    ok("train", *data["classify"], *SHORT, "--seed", "7", "--overwrite", "-o", run, "--tensorboard", events)
    assert same(scalar_events(events)["train/loss"], logged(run, "train", "train_loss"))


def test_without_tensorboard_one_line_before_any_work(base, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code, out, err = cli("train", base / "tiny.txt", *SHORT, "-o", tmp_path / "run", "--tensorboard", tmp_path / "tb")
    assert code == 2
    assert_one_line_error(code, out, err, "pip install 'charrnn[tensorboard]'")
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


def test_progress_events_carry_no_stale_validation_figure():
    event = Event("progress", 20, 1.0, {"train_loss": 1.5, "train_bpc": 2.2, "lr": 1e-3, "tokens_per_sec": 900.0,
                                        "epoch": 0.5, "skipped": 0, "progress": 0.2, "planned_steps": 100,
                                        "headline": "val_bpc", "val_bpc": 2.5})
    assert scalars(event) == {"train/loss": 1.5, "train/bpc": 2.2, "train/lr": 1e-3, "train/tokens_per_sec": 900.0,
                              "train/epoch": 0.5}
    assert scalars(Event("eval", 20, 1.0, {"val_loss": 1.0, "val_accuracy": 0.5, "best_val_accuracy": 0.5,
                                           "improved": True, "lr": 1e-3})) == {"val/loss": 1.0, "val/accuracy": 0.5}
    assert scalars(Event("done", 20, 1.0, {"val_loss": 1.0})) == {}
