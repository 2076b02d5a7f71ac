"""Choosing the model size: the rule on made-up speeds, the speed cache, the measurement."""

import dataclasses
import json
import math

import pytest
import torch

from charrnn.training import sizing
from charrnn.config import DEFAULT_EPOCHS, ModelConfig, TrainConfig
from charrnn.models.lm import RNNLanguageModel
from charrnn.training.sizing import (
    BATCH_SIZES,
    HIDDEN_SIZES,
    MIN_STEPS,
    PARAMS_PER_CORPUS_TOKEN,
    TOKENS_PER_PARAM,
    SpeedCache,
    choose_size,
    default_max_steps,
    measured_choice,
    params_of,
    planned_tokens,
    time_training_step,
)
from conftest import CELLS

BASE = ModelConfig(vocab_size=65)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers, hidden, emb, tied", [(1, 3, 5, False), (2, 7, 5, False), (3, 6, 6, True)])
def test_params_of_counts_what_the_model_has(cell, layers, hidden, emb, tied):
    cfg = ModelConfig(vocab_size=11, cell=cell, layers=layers, hidden_size=hidden, embedding_dim=emb, tie_weights=tied)
    assert params_of(cfg) == RNNLanguageModel(cfg).num_parameters()


def fake_speed(flops_per_sec: float, log: list | None = None, batch_cost: dict | None = None):
    """Speed inversely proportional to the parameters, as on a machine bound by the matmuls
    (the same at every batch, as measured on 2-core CPUs, unless ``batch_cost`` says)."""
    def measure(config: ModelConfig, batch: int) -> float:
        if log is not None:
            log.append(config.hidden_size)
        return flops_per_sec / params_of(config) / (batch_cost or {}).get(batch, 1.0)
    return measure


def expected_choice(cfg: TrainConfig, train_tokens: int, measure) -> tuple[int, int]:
    """The rule written out as a naive loop over every size and batch."""
    def plan(h, b):
        run = dataclasses.replace(cfg, batch_size=b)
        tokens = planned_tokens(run, train_tokens, measure(dataclasses.replace(BASE, hidden_size=h), b))
        return tokens, tokens / (b * cfg.bptt)

    smallest = HIDDEN_SIZES[0]
    most = BATCH_SIZES[0]
    for b in BATCH_SIZES[1:]:
        if plan(smallest, b)[1] > plan(smallest, most)[1] * 1.01:
            most = b
    need = min(MIN_STEPS, plan(smallest, most)[1])
    best = None
    for h in HIDDEN_SIZES:
        p = params_of(dataclasses.replace(BASE, hidden_size=h))
        if best is not None and p > PARAMS_PER_CORPUS_TOKEN * train_tokens:
            break
        ok = [b for b in BATCH_SIZES if plan(h, b)[1] >= need * 0.999 and plan(h, b)[0] >= TOKENS_PER_PARAM * p]
        if not ok:
            return best if best is not None else (smallest, most)
        best = (h, ok[0])
    return best


@pytest.mark.parametrize("flops", [1e9, 1e10, 3e10, 1e11, 1e12, 1e14])
@pytest.mark.parametrize("limits", [dict(time_budget=120), dict(time_budget=300), dict(time_budget=3600),
                                    dict(epochs=2), dict(max_steps=500), dict(max_steps=5000), dict()])
def test_the_largest_size_that_gets_enough_steps_and_tokens_per_parameter(flops, limits):
    cfg = TrainConfig(**limits)
    tokens = 1_000_000
    log = []
    choice = choose_size(BASE, cfg, tokens, fake_speed(flops, log))
    assert (choice.hidden_size, choice.batch_size) == expected_choice(cfg, tokens, fake_speed(flops))
    chosen = dataclasses.replace(BASE, hidden_size=choice.hidden_size)
    assert choice.tokens_per_sec == pytest.approx(flops / params_of(chosen))
    # Measured from the smallest up, and at most one size past the chosen one.
    assert log == sorted(log) and log[0] == HIDDEN_SIZES[0]
    assert log[-1] in (choice.hidden_size, HIDDEN_SIZES[min(HIDDEN_SIZES.index(choice.hidden_size) + 1,
                                                                  len(HIDDEN_SIZES) - 1)])
    assert f"{BASE.layers}x{choice.hidden_size} at batch {choice.batch_size} chosen" in choice.reason


def test_a_smaller_batch_buys_steps_where_it_costs_no_speed():
    cfg = TrainConfig(time_budget=120)
    same = choose_size(BASE, cfg, 10**7, fake_speed(1e10))
    assert same.batch_size < BATCH_SIZES[0]  # 120 s is too few steps at batch 32 for this machine
    # Where a small batch is slow (a GPU), a larger one wins.
    slow = choose_size(BASE, cfg, 10**7, fake_speed(1e10, batch_cost={16: 4.0, 8: 8.0}))
    assert slow.batch_size == BATCH_SIZES[0]
    # A step limit: fewer tokens per step add no steps, so the batch stays, and the size
    # is the one those tokens suit.
    steps = choose_size(BASE, TrainConfig(max_steps=50), 10**7, fake_speed(1e10))
    assert steps.batch_size == BATCH_SIZES[0]
    # One epoch of a small corpus: no size gets MIN_STEPS, so the steps are those the data
    # allows, and the size follows the tokens per parameter, not the smallest.
    epoch = choose_size(BASE, TrainConfig(epochs=1), 1_000_000, fake_speed(1e10))
    assert epoch.batch_size == BATCH_SIZES[-1] and epoch.hidden_size > HIDDEN_SIZES[0]
    assert epoch.planned_tokens >= TOKENS_PER_PARAM * params_of(dataclasses.replace(BASE, hidden_size=epoch.hidden_size))
    # A given batch is kept.
    given = choose_size(BASE, cfg, 10**7, fake_speed(1e10), batch_sizes=(64,))
    assert given.batch_size == 64


def test_faster_machines_and_longer_budgets_get_larger_models():
    tokens = 10_000_000
    by_speed = [choose_size(BASE, TrainConfig(time_budget=300), tokens, fake_speed(f)).hidden_size
                for f in (1e9, 1e10, 1e11, 1e12, 1e13)]
    by_budget = [choose_size(BASE, TrainConfig(time_budget=b), tokens, fake_speed(1e10)).hidden_size
                 for b in (60, 300, 1800, 7200)]
    for sizes in (by_speed, by_budget):
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_a_small_corpus_caps_the_size_whatever_the_speed():
    choice = choose_size(BASE, TrainConfig(time_budget=3600), 200_000, fake_speed(1e15))
    p = params_of(dataclasses.replace(BASE, hidden_size=choice.hidden_size))
    nxt = HIDDEN_SIZES[HIDDEN_SIZES.index(choice.hidden_size) + 1]
    assert HIDDEN_SIZES[0] < choice.hidden_size and p <= PARAMS_PER_CORPUS_TOKEN * 200_000 < params_of(dataclasses.replace(BASE, hidden_size=nxt))
    assert "parameters per corpus token" in choice.reason


def test_the_smallest_size_when_nothing_fits():
    choice = choose_size(BASE, TrainConfig(time_budget=10), 1000, fake_speed(1e6))
    assert choice.hidden_size == HIDDEN_SIZES[0] and choice.batch_size == BATCH_SIZES[-1]
    assert "too short for any size" in choice.reason


def test_planned_tokens_follows_the_first_limit():
    window = 32 * 128
    assert planned_tokens(TrainConfig(max_steps=10), 10**9, 1e6) == 10 * window
    assert planned_tokens(TrainConfig(epochs=2.5), 1000, 1e6) == 2500
    budget = planned_tokens(TrainConfig(time_budget=100), 10**12, 1000.0)
    assert budget == pytest.approx((100 - sizing.SETUP_SECONDS) * 0.9 * 1000)
    assert planned_tokens(TrainConfig(time_budget=100, max_steps=1), 10**12, 1e9) == window
    # No limits: the default epochs, or about DEFAULT_SECONDS, whichever is fewer tokens.
    assert planned_tokens(TrainConfig(), 1000, 1e6) == DEFAULT_EPOCHS * 1000
    assert planned_tokens(TrainConfig(), 10**12, 1000.0) == pytest.approx(
        (sizing.DEFAULT_SECONDS - sizing.SETUP_SECONDS) * 0.9 * 1000)


def test_default_run_is_the_default_epochs_or_the_steps_that_fit_the_default_time():
    cfg = TrainConfig(batch_size=4, bptt=10)
    quick = sizing.SizeChoice(128, 1e9, planned_tokens(cfg, 10_000, 1e9), "r", batch_size=4)
    assert default_max_steps(cfg, quick, 10_000) == cfg  # 6 epochs come first: untouched
    slow = sizing.SizeChoice(128, 100.0, planned_tokens(cfg, 10**8, 100.0), "r", batch_size=4)
    limited = default_max_steps(cfg, slow, 10**8)
    assert limited.epochs == DEFAULT_EPOCHS
    assert limited.max_steps == math.floor(slow.planned_tokens / 40)
    assert limited.max_steps * 40 / 100.0 <= sizing.DEFAULT_SECONDS
    given = TrainConfig(epochs=1)
    assert default_max_steps(given, slow, 10**8) is given


def test_timing_a_step_measures_a_speed_and_leaves_the_random_state_alone():
    cfg = ModelConfig(vocab_size=7, hidden_size=5, embedding_dim=3)
    ids = torch.randint(0, 7, (50,), dtype=torch.int16)  # shorter than a window: repeated
    before = torch.get_rng_state()
    speed = time_training_step(cfg, ids, batch_size=3, bptt=5, device=torch.device("cpu"), dtype=None)
    assert torch.equal(torch.get_rng_state(), before)
    assert 0 < speed < math.inf


def test_the_speed_cache_makes_the_choice_repeatable(tmp_path, monkeypatch):
    timed = []
    monkeypatch.setattr(sizing, "time_training_step",
                        lambda config, *a, **k: timed.append(config.hidden_size) or 1e10 / params_of(config))
    ids = torch.zeros(10_000_000, dtype=torch.int16)
    cfg = TrainConfig(time_budget=300)
    first = measured_choice(BASE, cfg, ids, torch.device("cpu"), None, auto=True, cache=SpeedCache(tmp_path / "s.json"))
    assert timed and not first.cached
    n = len(timed)
    # The machine now "measures" other speeds; the cached ones win, so the choice holds.
    monkeypatch.setattr(sizing, "time_training_step", lambda config, *a, **k: 1.0)
    again = measured_choice(BASE, cfg, ids, torch.device("cpu"), None, auto=True, cache=SpeedCache(tmp_path / "s.json"))
    assert again.cached and again.hidden_size == first.hidden_size and again.speeds == first.speeds
    assert len(timed) == n
    entries = json.loads((tmp_path / "s.json").read_text())["speeds"]
    assert len(entries) == len(first.speeds) and all("batch " in k and "fp32" in k for k in entries)


@pytest.mark.parametrize("content", [b"not json", b'{"version": 999, "speeds": {}}', b'{"version": 1}', b"\xff\xfe"])
def test_a_damaged_speed_cache_is_ignored_and_rewritten(tmp_path, content):
    path = tmp_path / "speed.json"
    path.write_bytes(content)
    cache = SpeedCache(path)
    assert cache.entries == {}
    cache.put("k", 2.5)
    assert SpeedCache(path).get("k") == 2.5


def test_an_unwritable_cache_only_costs_a_new_measurement(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = SpeedCache(blocker / "sub" / "speed.json")  # its folder cannot be made
    cache.put("k", 1.0)
    assert cache.get("k") == 1.0


def test_several_processes_time_their_share_of_the_batch(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sizing, "time_training_step", lambda config, ids, batch, *a, **k: seen.append(batch) or 100.0)
    measure, _ = sizing.speed_meter(torch.zeros(100, dtype=torch.int16), 128, torch.device("cpu"), None,
                                    SpeedCache(tmp_path / "s.json"), processes=4)
    assert measure(BASE, 32) == 400.0 and seen == [8]


# --------------------------------------------------------------------------- the command line

def _train_cli(capsys, corpus, out, *extra):
    from test_cli import run

    return run(capsys, "train", corpus, "--out", out, "--layers", "1", "--embedding-dim", "8", "--batch-size", "4",
               "--bptt", "8", "--device", "cpu", "--precision", "fp32", "--eval-interval", "10", "--json", *extra)


def test_train_chooses_the_size_says_why_and_stores_it(capsys, tiny_corpus, tmp_path):
    from charrnn.checkpoint import load_checkpoint

    code, out, err = _train_cli(capsys, tiny_corpus, tmp_path / "a", "--max-steps", "12")
    assert code == 0, err
    ck = load_checkpoint(tmp_path / "a")
    # A few hundred characters: the smallest size, held back by the corpus.
    assert ck.model_config.hidden_size == HIDDEN_SIZES[0]
    assert ck.sizing["auto"] and ck.sizing["hidden_size"] == HIDDEN_SIZES[0] and not ck.sizing["cached"]
    assert f"size: 1x{HIDDEN_SIZES[0]} at batch 4 chosen for the run's limits" in err and "speeds just measured" in err
    code, out, _ = _run_info(capsys, tmp_path / "a")
    assert code == 0 and "chosen" in out
    code, out, _ = _run_info(capsys, tmp_path / "a", "--json")
    assert json.loads(out)["sizing"] == ck.sizing
    # The same command again: the same choice, from the cache, and the same run.
    code, out, err = _train_cli(capsys, tiny_corpus, tmp_path / "b", "--max-steps", "12")
    assert code == 0 and "from this machine's cache" in err
    again = load_checkpoint(tmp_path / "b")
    assert again.sizing["cached"] and again.model_config == ck.model_config
    for k, v in ck.weights.items():
        assert torch.equal(v, again.weights[k]), k


def _run_info(capsys, path, *extra):
    from test_cli import run

    return run(capsys, "info", path, *extra)


def test_a_given_size_is_kept_and_only_timed_for_the_prediction(capsys, tiny_corpus, tmp_path):
    from charrnn.checkpoint import load_checkpoint

    code, out, err = _train_cli(capsys, tiny_corpus, tmp_path / "a", "--hidden-size", "16", "--max-steps", "4")
    assert code == 0, err
    ck = load_checkpoint(tmp_path / "a")
    assert ck.model_config.hidden_size == 16 and not ck.sizing["auto"] and "size:" not in err
    assert "in about" in err.splitlines()[0]  # the start line predicts the duration
    # With a time budget and a given size there is nothing to measure.
    code, out, err = _train_cli(capsys, tiny_corpus, tmp_path / "b", "--hidden-size", "16", "--time-budget", "60",
                                "--max-steps", "4")
    assert code == 0 and load_checkpoint(tmp_path / "b").sizing is None


def test_resume_keeps_the_stored_choice_without_measuring(capsys, tiny_corpus, tmp_path, monkeypatch):
    from charrnn.checkpoint import load_checkpoint

    code, _, err = _train_cli(capsys, tiny_corpus, tmp_path / "a", "--max-steps", "6")
    assert code == 0, err
    first = load_checkpoint(tmp_path / "a", latest=True)

    def no_measuring(*a, **k):
        raise AssertionError("a resumed run measured again")

    monkeypatch.setattr(sizing, "time_training_step", no_measuring)
    monkeypatch.setattr(sizing, "measured_choice", no_measuring)
    code, _, err = _train_cli(capsys, tiny_corpus, tmp_path / "a", "--max-steps", "12", "--resume")
    assert code == 0, err
    latest = load_checkpoint(tmp_path / "a", latest=True)
    assert latest.step == 12 and latest.sizing == first.sizing and latest.model_config == first.model_config


def test_no_limits_fixes_a_step_count_from_the_measured_speed(capsys, tiny_corpus, tmp_path, monkeypatch):
    """A run given no limit trains the default epochs, or the steps that fit the default
    time at the measured speed (here made very slow), stored as --max-steps."""
    from charrnn.checkpoint import load_checkpoint

    monkeypatch.setattr(sizing, "time_training_step", lambda *a, **k: 4 * 8 * 5 / sizing.DEFAULT_SECONDS * 1.2)
    code, out, err = _train_cli(capsys, tiny_corpus, tmp_path / "a")
    assert code == 0, err
    tc = load_checkpoint(tmp_path / "a").train_config
    assert tc.epochs == DEFAULT_EPOCHS and 1 <= tc.max_steps <= 5
    assert json.loads(out)["steps"] == tc.max_steps
