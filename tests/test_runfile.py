"""Run files (cli/runfile.py): `charrnn train --config run.toml`, and RUN/config.toml."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import typer

from charrnn.cli import app
from charrnn.cli.runfile import _toml
from conftest import TINY_TEXT
from test_cli import run

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

TINY = ["--layers", "1", "--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "4", "--device", "cpu",
        "--precision", "fp32", "--threads", "1", "--max-steps", "3", "--log-interval", "1", "--eval-interval", "3"]
TINY_FILE = """
task = "lm"
corpus = "tiny.txt"
max_steps = 3          # flat, with an underscore

[model]
layers = 1
hidden-size = 16
embedding-dim = 8

[optimisation]
batch-size = 4
bptt = 8

[Hardware]
device = "cpu"
precision = "fp32"
threads = 1

[output]
log-interval = 1
eval-interval = 3
"""


cli = run  # test_cli.run: the CLI in-process -> (exit code, stdout, stderr)


def ok(capsys, *argv) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 0 and "Traceback" not in err, err
    return out


def one_line_error(capsys, *argv) -> str:
    code, out, err = cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and out == "" and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("charrnn: error: ")
    return lines[0]


def losses(run: Path) -> list[float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r["train_loss"] for r in records if r.get("event") == "train"]


def saved(run: Path) -> dict:
    """The run's config.toml, without the line that names the run directory itself."""
    text = (run / "config.toml").read_text()
    data = tomllib.loads(text)
    assert Path(data["output"].pop("out")).resolve() == run.resolve()
    return data


def parsed(*argv) -> typer.Context:
    """The train command's context after parsing ``argv`` (nothing runs)."""
    command = typer.main.get_command(app).commands["train"]
    return command.make_context("train", [str(a) for a in argv])


# ----------------------------------------------------------------------------- the TOML writer


def test_the_toml_writer_round_trips_through_tomllib():
    values = {"s": 'quote " back\\slash\ttab\nnewline é 한 😀 \x01', "empty": "", "i": -7, "big": 10**15,
              "f": 0.003, "tiny": 1e-05, "huge": 1e16, "whole": 3.0, "neg": -0.5, "inf": math.inf,
              "t": True, "no": False, "paths": ["a b/c.txt", "tinyshakespeare"]}
    text = "\n".join(f"{k} = {_toml(v)}" for k, v in values.items())
    back = tomllib.loads(text)
    assert back == values
    assert all(type(back[k]) is type(v) for k, v in values.items())  # 3.0 stays a float, True a bool


# ----------------------------------------------------------------------------- reading


def test_the_file_counts_as_given_and_a_flag_wins(tmp_path):
    run = tmp_path / "run.toml"
    run.write_text(TINY_FILE)
    ctx = parsed("--config", run, "--layers", "3")
    assert ctx.params["layers"] == 3 and ctx.get_parameter_source("layers").name == "COMMANDLINE"
    assert ctx.params["hidden_size"] == 16 and ctx.get_parameter_source("hidden_size").name == "DEFAULT_MAP"
    assert ctx.params["max_steps"] == 3 and ctx.params["corpus"] == ["tiny.txt"]
    assert ctx.params["precision"].value == "fp32" and ctx.params["lr"] == 3e-3
    assert ctx.get_parameter_source("lr").name == "DEFAULT"
    assert parsed("--config", run, "other.txt", "b.txt").params["corpus"] == ["other.txt", "b.txt"]


def test_on_resume_the_file_gives_only_the_data_and_what_a_resume_may_change(tmp_path):
    run = tmp_path / "run.toml"
    run.write_text(TINY_FILE)
    ctx = parsed("--config", run, "--resume")
    assert ctx.params["corpus"] == ["tiny.txt"] and ctx.params["max_steps"] == 3 and ctx.params["threads"] == 1
    assert ctx.get_parameter_source("hidden_size").name == "DEFAULT"  # the run keeps its own


@pytest.mark.parametrize("text, message", [
    ("hiden-size = 3", "unknown key 'hiden-size'; did you mean 'hidden-size'?"),
    ("[model]\nlayer = 3", "unknown key 'layer' in [model]; did you mean 'layers'?"),
    ("[modle]\nlayers = 3", "unknown section [modle] (sections: "),
    ("layers = \"three\"", "layers = \"three\": expected a whole number"),
    ("[model]\nlayers = 0", "layers in [model] = 0: out of range (expected at least 1 and at most 64)"),
    ("layers = 2.5", "layers = 2.5: expected a whole number"),
    ("dropout = true", "dropout = true: expected a number"),
    ("dropout = 1.5", "dropout = 1.5: out of range (expected at least 0.0 and at most 0.99)"),
    ("tie-weights = 1", "tie-weights = 1: expected true or false"),
    ("cell = \"lstn\"", "cell = \"lstn\": expected one of \"lstm\", \"gru\", \"rnn\""),
    ("task = \"translate\"", "task = \"translate\": expected one of \"lm\", \"classify\""),
    ("corpus = 3", "corpus = 3: expected a string"),
    ("corpus = []", "corpus = []: expected a list of strings"),
    ("val-file = [\"a\"]", "val-file = [\"a\"]: expected a string"),
    ("resume = true", "resume: give --resume on the command line"),
    ("overwrite = true", "overwrite: give --overwrite on the command line"),
    ("nproc = 2", "nproc: give --nproc on the command line"),
    ("config = \"other.toml\"", "config: a run file cannot name another run file"),
    ("layers = 2\n[model]\nlayers = 3", "layers is given twice (layers and layers in [model])"),
    ("[model.lstm]\nlayers = 2", "[model.lstm]: sections do not nest"),
    ("layers = ", "not valid TOML (Invalid value (at line 1, column 10))"),
])
def test_a_mistake_in_the_file_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, text, message):
    run = tmp_path / "run.toml"
    run.write_text(text + "\n")
    line = one_line_error(capsys, "train", "--config", run, "tiny.txt")
    assert line.startswith(f"charrnn: error: {run}: ") and message in line, line


def test_a_missing_run_file_is_one_line(tmp_path, capsys):
    assert "no such run file" in one_line_error(capsys, "train", "--config", tmp_path / "nope.toml", "x.txt")


# ----------------------------------------------------------------------------- config.toml


def test_a_run_file_and_the_same_flags_give_the_same_run_and_config_toml_repeats_it(tmp_path, capsys):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    ok(capsys, "train", "tiny.txt", "--bptt", "8", *TINY, "--out", "flags", "--quiet")
    (tmp_path / "run.toml").write_text(TINY_FILE)
    ok(capsys, "train", "--config", "run.toml", "--out", "file", "--quiet")
    assert saved(tmp_path / "flags") == saved(tmp_path / "file")
    first = saved(tmp_path / "flags")
    assert first["task"] == "lm" and first["corpus"] == ["tiny.txt"] and first["model"]["hidden-size"] == 16
    assert first["optimisation"]["lr"] == 0.003 and "bidirectional" not in str(first)  # resolved, and only the LM's
    # The saved configuration repeats the run: same first steps' losses.
    ok(capsys, "train", "--config", tmp_path / "flags" / "config.toml", "--out", "again", "--quiet")
    assert saved(tmp_path / "again") == first
    assert losses(tmp_path / "flags") == losses(tmp_path / "file") == losses(tmp_path / "again")
    assert len(losses(tmp_path / "flags")) == 3
    # A flag overrides the file, and the saved configuration says so.
    ok(capsys, "train", "--config", "run.toml", "--out", "lr", "--lr", "0.01", "--quiet")
    assert saved(tmp_path / "lr")["optimisation"]["lr"] == 0.01
    assert losses(tmp_path / "lr")[0] == losses(tmp_path / "flags")[0] and losses(tmp_path / "lr") != losses(tmp_path / "flags")
    # --resume with the run's own file: continues, and config.toml takes the new limit only.
    ok(capsys, "train", "--config", tmp_path / "flags" / "config.toml", "--resume", "--max-steps", "5", "--quiet")
    resumed = saved(tmp_path / "flags")
    assert resumed["stopping"]["max-steps"] == 5
    resumed["stopping"]["max-steps"] = 3
    assert resumed == first and len(losses(tmp_path / "flags")) == 5


def test_the_summary_and_info_name_the_version(tmp_path, capsys):
    from charrnn import __version__

    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    summary = json.loads(ok(capsys, "train", "tiny.txt", "--bptt", "8", *TINY, "--out", "r", "--quiet", "--json"))
    assert summary["charrnn_version"] == __version__
    assert json.loads(ok(capsys, "info", "r", "--json"))["charrnn_version"] == __version__
    assert f"written by {__version__}" in ok(capsys, "info", "r")


def _task_data(tmp_path: Path) -> dict[str, list[str]]:
    labelled = tmp_path / "labelled.tsv"
    labelled.write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in [("abab ab", "a"), ("yzzy zy", "z"),
                                                                            ("baba", "a"), ("zzyy", "z")] * 4))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{w}\t{' '.join(w)}\n" for w in ["abc", "bca", "cab", "acb", "bac", "cba"] * 3))
    tagged = tmp_path / "tagged.tsv"
    tagged.write_text("".join("the\tDET\ncat\tNOUN\nsat\tVERB\n\n" for _ in range(8)))
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    return {"lm": ["tiny.txt", "--bptt", "8", "--tie-weights", "--embedding-dim", "16"],
            "classify": ["--task", "classify", str(labelled), "--pool", "mean", "--embedding-dim", "8"],
            "seq2seq": ["--task", "seq2seq", str(pairs), "--target-tokenizer", "space", "--teacher-forcing", "0.5",
                        "--embedding-dim", "8"],
            "tag": ["--task", "tag", str(tagged), "--char-hidden-size", "4", "--embedding-dim", "8"],
            "conditional": ["--task", "conditional", str(labelled), "--label-dim", "4", "--embedding-dim", "8"]}


@pytest.mark.parametrize("task", ["lm", "classify", "seq2seq", "tag", "conditional"])
def test_every_task_is_repeated_by_its_config_toml(tmp_path, capsys, task):
    argv = _task_data(tmp_path)[task]
    tiny = ["--layers", "1", "--hidden-size", "16", "--batch-size", "4", "--device", "cpu", "--precision", "fp32",
            "--threads", "1", "--max-steps", "2", "--log-interval", "1", "--eval-interval", "2", "--quiet"]
    ok(capsys, "train", *argv, *tiny, "--out", "first")
    first = saved(tmp_path / "first")
    assert first["task"] == task
    ok(capsys, "train", "--config", tmp_path / "first" / "config.toml", "--out", "again", "--quiet")
    assert saved(tmp_path / "again") == first
    assert losses(tmp_path / "again") == losses(tmp_path / "first") and losses(tmp_path / "first")
