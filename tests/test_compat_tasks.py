"""Old checkpoints of every task still load and give what they gave.

tests/data/release-0.1.0-tasks holds one tiny checkpoint per task (lm, classify, tag,
seq2seq, conditional), trained by commit 281c1a5 before the package refactor, and
expected.json with what that code produced from each through the Python API (greedy,
seeded and beam generation, predictions with probabilities and scores, evaluation) and the
key fields of ``charrnn info --json``. The outputs are recomputed here by the fixture's own
``make.record`` on the same inputs: texts, labels and counts must be equal, floats equal
to 1e-5 relative (sums of float32 log-probabilities differ in the last bits across CPUs).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

import charrnn
from charrnn.checkpoint import load_checkpoint
from charrnn.cli import main

HERE = Path(__file__).parent / "data" / "release-0.1.0-tasks"
EXPECTED = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
TASKS = ["lm", "classify", "tag", "seq2seq", "conditional"]


def _make():
    spec = importlib.util.spec_from_file_location("release_tasks_make", HERE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _make()


def assert_same(got, want, where: str = "outputs") -> None:
    """``got`` equals ``want`` (both JSON-shaped): floats to 1e-5 relative, the rest exactly."""
    if isinstance(want, float):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), f"{where}: {got!r} is not a number"
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-7), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want and type(got) is type(want), f"{where}: {got!r} != {want!r}"


class As010:
    """The model through 0.1.0's API where it has changed since: an encoder-decoder's
    ``perplexity`` gave a tuple (loss, tokens) and now gives an EvalResult, as the
    conditioned generator's does (one API surface); the figures are the same."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def perplexity(self, sources, targets):
        result = self.model.perplexity(sources, targets)
        return result.loss, result.tokens


@pytest.mark.parametrize("task", TASKS)
def test_an_old_checkpoint_gives_the_outputs_it_gave(task):
    path = HERE / f"{task}.safetensors"
    assert load_checkpoint(path).task == task
    model = charrnn.load(path, device="cpu")
    if task == "seq2seq":
        model = As010(model)
    assert_same(make.as_json(make.record(task, model)), EXPECTED[task]["outputs"], task)


@pytest.mark.parametrize("task", TASKS)
def test_info_of_an_old_checkpoint_is_unchanged(task, capsys):
    try:
        main(["info", str(HERE / f"{task}.safetensors"), "--json"])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    info = json.loads(capsys.readouterr().out)
    assert {k: info[k] for k in make.INFO_KEYS} == EXPECTED[task]["info"]


def test_the_fixture_records_its_commit():
    assert EXPECTED["generated_from"]["commit"].startswith("281c1a5") and set(TASKS) <= EXPECTED.keys()
