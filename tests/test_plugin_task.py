"""A task that lives outside charrnn (issue 33's must-show): ``tests/plugins/charrnn_regress``,
many-to-one regression (text -> a number, mean squared error and Pearson r), installed the
way a user's package is, through its ``charrnn.tasks`` entry point (the dist-info next to it,
found once tests/plugins is on the path). With no line of charrnn/ written for it, it trains
with ``charrnn train --task regress``, resumes, and works with ``info``, ``predict``, ``eval
accuracy``, ``serve`` (``/v1/predict``) and ``charrnn.load``.

``train`` (new, resumed, --help, a refusal) and a ``predict`` run as subprocesses with
PYTHONPATH=tests/plugins: the plugin is found as an installed package would be, by a fresh
process. ``info``, ``predict`` and ``eval accuracy`` also run through the command line in this
process, and the Python API and the server too, with the plugin registered for this module
only (``register_task``, then ``unregister_task``): subprocesses cost seconds each."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

# The in-process command line, imported (so built) here, before the plugin is registered:
# the other tests of the session never see its task or options.
from test_cli_classify import cli

PLUGINS = Path(__file__).resolve().parent / "plugins"
N = 30  # steps of the first run; the resumed run goes on to 2 * N
HW = ["--device", "cpu", "--precision", "fp32", "--threads", "1"]
TINY = ["--hidden-size", "8", "--embedding-dim", "6", "--batch-size", "16", "--lr", "0.02", "--warmup-steps", "5",
        "--eval-interval", "15", *HW]
SCALE = 100.0  # --target-scale: the targets (fractions) are learned and predicted as percentages
TEXTS = ["aaaa", "bcd", "abab", "dddda", "a", "cabbage"]  # to predict: one per line


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), *([e["PYTHONPATH"]] if e.get("PYTHONPATH") else [])])
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200", NO_COLOR="1")
    return e


def start(*argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, argv)], cwd=cwd, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p: subprocess.Popen) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def charrnn(*argv, cwd: Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m charrnn ARGV`` with the plugin installed."""
    return finish(start(*argv, cwd=cwd))


def ok(result: tuple[int, str, str], what: str = "") -> str:
    code, out, err = result
    assert code == 0, f"charrnn {what} -> {code}: {err}"
    assert "Traceback" not in err
    return out


def ok_here(*argv) -> str:
    """stdout of the command line run in this process (with the plugin registered)."""
    code, out, err = cli(*argv)
    assert code == 0, f"charrnn {' '.join(map(str, argv))} -> {code}: {err}"
    assert "Traceback" not in err
    return out


def share_of_a(text: str) -> float:
    return text.count("a") / len(text)


def write_data(base: Path) -> None:
    """text<TAB>number lines: random letters, and the share of them that are 'a'."""
    rng = random.Random(0)

    def lines(n: int) -> str:
        texts = ["".join(rng.choice("abcde") for _ in range(rng.randint(3, 12))) for _ in range(n)]
        return "".join(f"{t}\t{share_of_a(t):.4f}\n" for t in texts)

    (base / "data.tsv").write_text("text\tshare\n" + lines(200), encoding="utf-8")  # with a header line
    (base / "dev.tsv").write_text(lines(50), encoding="utf-8")
    (base / "texts.txt").write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")


def eval_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == "eval"]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Train N steps, resume to 2N, then predict with the run in a fresh process (which finds
    the plugin's model kind and API class through its entry point)."""
    base = tmp_path_factory.mktemp("regress")
    write_data(base)
    run = base / "RUN"
    # What needs no run starts alongside the training.
    side = {"help": start("train", "--help", cwd=base),
            "lm": start("train", "--task", "lm", "--target-scale", "2", "data.tsv", "-o", base / "LM", cwd=base)}
    first = ok(charrnn("train", "--task", "regress", "data.tsv", "--val-file", "dev.tsv", "--max-steps", N,
                       "--target-scale", SCALE, *TINY, "-o", run, "--json", cwd=base), "train")
    evals_first = eval_records(run)
    second = ok(charrnn("train", "--task", "regress", "data.tsv", "--val-file", "dev.tsv", "--max-steps", 2 * N, *HW,
                        "-o", run, "--resume", "--json", "--quiet", cwd=base), "train --resume")
    after = {"predict_json": start("predict", run, "texts.txt", "--threads", "1", "--json", cwd=base)}
    results = {name: finish(p) for name, p in {**side, **after}.items()}
    return {"base": base, "run": run, "first": json.loads(first), "second": json.loads(second),
            "evals_first": evals_first, "results": results}


def baseline_mse(base: Path) -> float:
    """The validation MSE of always predicting the training targets' mean (in the scaled unit)."""
    def numbers(name: str) -> list[float]:
        rows = (base / name).read_text(encoding="utf-8").splitlines()
        return [float(r.split("\t")[1]) * SCALE for r in rows if r and not r.startswith("text\t")]

    mean = sum(numbers("data.tsv")) / len(numbers("data.tsv"))
    dev = numbers("dev.tsv")
    return sum((y - mean) ** 2 for y in dev) / len(dev)


# ----------------------------------------------------------------------------- the command line


def test_the_entry_point_is_a_real_one(monkeypatch):
    from importlib.metadata import entry_points

    monkeypatch.syspath_prepend(str(PLUGINS))
    (ep,) = [e for e in entry_points(group="charrnn.tasks") if e.name == "regress"]
    assert ep.value == "charrnn_regress:SPEC"


def test_trains_and_learns(cli_runs):
    s, base, run = cli_runs["first"], cli_runs["base"], cli_runs["run"]
    assert s["task"] == "regress" and s["steps"] == N and s["resumed_from"] is None
    assert (run / "best.safetensors").is_file() and (run / "latest.safetensors").is_file()
    evals = cli_runs["evals_first"]
    assert [r["step"] for r in evals] == [15, 30]
    assert all(math.isfinite(r[k]) for r in evals for k in ("val_loss", "val_mse", "val_pearson"))
    assert s["val_mse"] == min(r["val_mse"] for r in evals)  # the best checkpoint is the lowest MSE
    # Better than predicting the mean, and correlated with the truth.
    assert s["val_mse"] < baseline_mse(base) and s["val_pearson"] > 0.3
    # The run file keeps the plugin's own options in its own section.
    toml = (run / "config.toml").read_text(encoding="utf-8")
    assert 'task = "regress"' in toml and "[regression]" in toml and f"target-scale = {SCALE!r}" in toml


def test_train_help_lists_the_plugin_and_keeps_the_built_in_flags(cli_runs):
    help_text = ok(cli_runs["results"]["help"], "train --help")
    assert "regress" in help_text and "--target-scale" in help_text and "Regression" in help_text
    # A plugin's options must leave the built-in ones as they are declared (flags, short names).
    assert "-o" in help_text.split() and "--json" in help_text.split() and "--json-out" not in help_text


def test_a_built_in_task_refuses_the_plugins_option(cli_runs):
    code, out, err = cli_runs["results"]["lm"]
    assert code != 0 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), err
    assert "--target-scale" in lines[0] and "regress" in lines[0]
    assert not (cli_runs["base"] / "LM").exists()


# ----------------------------------------------------------------------------- in this process
#
# info, predict and eval as text run through the command line in this process (``cli``), with
# the plugin registered here: the command line itself was built at import, without it.


@pytest.fixture(scope="module")
def plugin():
    """The plugin importable and registered for this module's tests, and gone afterwards."""
    from charrnn import kinds
    from charrnn.tasks import registry

    path = str(PLUGINS)
    sys.path.insert(0, path)
    try:
        import charrnn_regress

        # The registry may have read the entry points before the path had the plugin.
        registry.register_task(charrnn_regress.SPEC)
        yield charrnn_regress
    finally:
        registry.unregister_task("regress")
        kinds.EXTRA_MODEL_KINDS.pop("regressor", None)  # unregister_task leaves the model kind behind
        sys.path.remove(path)
        for name in [m for m in sys.modules if m == "charrnn_regress" or m.startswith("charrnn_regress.")]:
            del sys.modules[name]
        assert "regress" not in [t.name for t in registry.all_tasks()]


@pytest.fixture(scope="module")
def regressor(plugin, cli_runs):
    import charrnn

    return charrnn.load(cli_runs["run"], device="cpu")


def test_resumes(cli_runs, plugin):
    s, first = cli_runs["second"], cli_runs["first"]
    assert (s["steps"], s["resumed_from"], s["steps_this_run"]) == (2 * N, N, N)
    assert s["val_mse"] <= first["val_mse"]  # the best so far, over the whole run
    assert [r["step"] for r in eval_records(cli_runs["run"])] == [15, 30, 45, 60]
    latest = json.loads(ok_here("info", cli_runs["run"], "--latest", "--json"))
    assert latest["step"] == 2 * N and latest["task_state"]["target_scale"] == SCALE


def test_info(cli_runs, plugin):
    s, run = cli_runs["second"], cli_runs["run"]
    text = ok_here("info", run)
    assert "regressor" in text and "val MSE" in text and "Pearson r" in text and "1x8 LSTM" in text
    d = json.loads(ok_here("info", run, "--json"))
    assert d["task"] == "regress" and d["step"] == s["best_step"]
    assert d["model_config"]["hidden_size"] == 8 and d["model_config"]["vocab_size"] == d["vocab_size"]
    assert d["metrics"]["best_val_mse"] == pytest.approx(s["val_mse"])
    assert set(d["task_state"]) >= {"mean", "std", "target_scale", "loss"}


def test_predict(cli_runs, plugin):
    lines = ok_here("predict", cli_runs["run"], cli_runs["base"] / "texts.txt").splitlines()
    assert len(lines) == len(TEXTS)
    values = [float(x) for x in lines]
    records = [json.loads(x) for x in ok(cli_runs["results"]["predict_json"], "predict --json").splitlines()]
    assert [r["text"] for r in records] == TEXTS
    assert [r["value"] for r in records] == pytest.approx(values, abs=1e-4)
    # Percentages now: more 'a' reads as a larger number.
    assert values[TEXTS.index("aaaa")] > values[TEXTS.index("bcd")]


def test_eval_accuracy(cli_runs, plugin):
    base = cli_runs["base"]
    d = json.loads(ok_here("eval", "accuracy", cli_runs["run"], base / "dev.tsv", "--json"))
    assert set(d) >= {"mse", "pearson", "examples"} and d["examples"] == 50
    assert d["mse"] == pytest.approx(cli_runs["second"]["val_mse"], rel=1e-4)  # validation measured the same
    assert d["mse"] < baseline_mse(base) and d["pearson"] > 0.3
    text = ok_here("eval", "accuracy", cli_runs["run"], base / "dev.tsv")
    assert "MSE" in text and "Pearson r" in text and "examples" in text


def test_load(regressor, plugin, cli_runs):
    from charrnn.api.base import Model

    assert isinstance(regressor, plugin.task.Regressor) and isinstance(regressor, Model)
    assert regressor.task == "regress" and regressor.spec is plugin.SPEC
    values = regressor.predict(TEXTS)
    assert len(values) == len(TEXTS) and all(isinstance(v, float) and math.isfinite(v) for v in values)
    printed = [json.loads(x)["value"] for x in ok(cli_runs["results"]["predict_json"]).splitlines()]
    assert values == pytest.approx(printed, abs=1e-5)  # the command line predicts the same
    assert regressor.predict(TEXTS, batch_size=2) == pytest.approx(values, abs=1e-5)
    assert regressor.predict([]) == []
    assert regressor.prediction_record(values[0]) == {"value": values[0]}
    assert regressor.prediction_text(1.5) == "1.5000"
    rep = regressor.evaluate_file(str(cli_runs["base"] / "dev.tsv"))
    assert rep.examples == 50 and rep.as_dict()["mse"] == pytest.approx(rep.mse)
    assert [name for name, _ in rep.rows()] == ["MSE", "RMSE", "MAE", "Pearson r", "examples"]


def test_python_training_api(cli_runs, plugin, tmp_path):
    """``charrnn.train`` takes the plugin's task and its options, and checks them as the command does."""
    import charrnn
    from charrnn.errors import ConfigError

    data = cli_runs["base"] / "data.tsv"
    for bad, says in [({"bptt": 5}, "--bptt: "), ({"target_scale": -1.0}, "--target-scale: "),
                      ({"loss": "l1"}, "--loss: ")]:
        with pytest.raises(ConfigError, match=says):
            charrnn.train(data, task="regress", progress=False, out=tmp_path / "bad", max_steps=1, **bad)
    model = charrnn.train(data, task="regress", progress=False, out=tmp_path / "py", max_steps=3, hidden_size=4,
                          embedding_dim=4, batch_size=16, device="cpu", threads=1, loss="huber")
    assert isinstance(model, plugin.task.Regressor) and model.checkpoint.task_state["loss"] == "huber"
    assert len(model.predict(TEXTS)) == len(TEXTS)


def test_serve_predict(regressor):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from charrnn.serve.app import create_app
    from charrnn.serve.limits import Limits

    with TestClient(create_app({"reg": regressor}, Limits(max_inputs=10))) as client:
        r = client.get("/v1/models")
        assert r.status_code == 200, r.text
        (card,) = r.json()["data"]
        assert card["id"] == "reg" and card["task"] == "regress" and card["endpoint"] == "/v1/predict"
        assert card["title"] == "regressor" and card["predict_options"] == []
        r = client.post("/v1/predict", json={"model": "reg", "input": ["aaaa", "bcd"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["task"] == "regress" and body["model"] == "reg"
        assert [(d["index"], d["input"]) for d in body["data"]] == [(0, "aaaa"), (1, "bcd")]
        assert [d["value"] for d in body["data"]] == pytest.approx(regressor.predict(["aaaa", "bcd"]), abs=1e-6)
        # What the task does not take is a 400 in the API's error shape, not a crash.
        r = client.post("/v1/predict", json={"model": "reg", "input": ["aaaa"], "top_k": 2})
        assert r.status_code == 400 and r.json()["error"]["param"] == "top_k"
        r = client.post("/v1/completions", json={"model": "reg", "prompt": "a"})
        assert r.status_code == 400, r.text
