"""Decoding engines (issue 35): charrnn's own step and ONNX Runtime's behind the same
DecoderStep protocol, the ``auto`` rule, the cache of graphs and timings, the fallback.

The ONNX Runtime tests skip where the ``onnx`` extra is not installed; the fallback and
``auto`` tests run everywhere.
"""

import builtins
import json
import warnings

import pytest
import torch
from conftest import CELLS, TINY_TEXT, tiny_model_config
from test_cli import run

from charrnn.checkpoint import save_checkpoint
from charrnn.config import SampleConfig, TrainConfig
from charrnn.decoding import StepRunner, beam_search, sample
from charrnn.decoding import engines
from charrnn.decoding.engines import EngineFallback, make_step
from charrnn.errors import ConfigError
from charrnn.models.lm import RNNLanguageModel
from charrnn.text.char import CharTokenizer

VOCAB = 9


def _model(cell: str, layers: int = 2, seed: int = 0) -> RNNLanguageModel:
    torch.manual_seed(seed)
    m = RNNLanguageModel(tiny_model_config(cell, vocab_size=VOCAB, hidden_size=16, layers=layers)).eval()
    with torch.no_grad():
        m.decoder.weight.mul_(3.0)
    return m


def _needs_onnx():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


def _no_onnxruntime(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("no onnxruntime here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name, *a: None)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_every_engine_equals_the_step_it_replaces_over_100_steps(engine, cell, layers):
    if engine == "onnx":
        _needs_onnx()
    model = _model(cell, layers, seed=layers)
    ids = torch.randint(0, VOCAB, (3, 100), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, _ = model(ids)
    for rows in (1, 3):
        step, plain = make_step(model, rows, engine), StepRunner(model, vector=False)  # the batched step of before
        plain.start(None, rows)
        step.start(None, rows)
        with torch.inference_mode():
            for t in range(100):
                got = step.step(ids[:rows, t]).clone()
                assert torch.allclose(got, plain.step(ids[:rows, t]), atol=1e-5, rtol=1e-5)
                assert torch.allclose(got, ref[:rows, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_onnx_engine_gives_the_same_greedy_text_samples_and_beams(cell):
    _needs_onnx()
    model = _model(cell, seed=4)
    prime = torch.tensor([1, 2, 3])
    kw = dict(token_text=str, start_id=0, banned=[0])
    for cfg in (SampleConfig(length=1000, greedy=True), SampleConfig(length=300, seed=5, temperature=1.2, num_samples=2)):
        onnx = sample(model, prime, SampleConfig(**{**vars(cfg), "engine": "onnx"}), **kw)
        own = sample(model, prime, SampleConfig(**{**vars(cfg), "engine": "torch"}), **kw)
        assert [g.tokens for g in onnx] == [g.tokens for g in own]
        assert [g.logprob for g in onnx] == pytest.approx([g.logprob for g in own], rel=1e-4)
    beam = SampleConfig(length=30, beam=4, num_return=4)
    onnx = beam_search(model, prime, SampleConfig(**{**vars(beam), "engine": "onnx"}), **kw)
    own = beam_search(model, prime, beam, **kw)
    assert [g.tokens for g in onnx] == [g.tokens for g in own]


def test_the_graph_is_traced_once_then_read_from_the_cache(monkeypatch, tmp_path):
    _needs_onnx()
    from charrnn.export import engine as onnx_engine

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "c"))
    model = _model("lstm")
    first = onnx_engine.onnx_step(model)
    assert len(list((tmp_path / "c" / "onnx").glob("*.onnx"))) == 1
    timings = json.loads((tmp_path / "c" / "engines.json").read_text())
    assert list(timings) == [engines.shape_key(model)] and set(timings[engines.shape_key(model)]) == {"torch", "onnx"}
    monkeypatch.setattr(onnx_engine, "trace", lambda g: pytest.fail("traced again"))
    again = onnx_engine.onnx_step(model)
    assert isinstance(again, onnx_engine.OnnxStep) and again is not first
    with torch.no_grad():  # other weights: another graph, which auto does not trace
        model.decoder.bias.add_(1.0)
    assert onnx_engine.onnx_step(model, cached_only=True) is None


def test_auto_takes_onnx_only_where_it_was_measured_faster_and_is_cached(monkeypatch, tmp_path):
    _needs_onnx()
    from charrnn.export.engine import OnnxStep

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "c"))
    model = _model("gru")
    assert type(make_step(model, 1, "auto")) is StepRunner  # nothing measured yet
    make_step(model, 1, "onnx")  # traces, caches, times
    path = tmp_path / "c" / "engines.json"
    key = engines.shape_key(model)
    for torch_s, onnx_s, want in ((2e-4, 1e-4, OnnxStep), (1e-4, 2e-4, StepRunner), (1.01e-4, 1e-4, StepRunner)):
        path.write_text(json.dumps({key: {"torch": torch_s, "onnx": onnx_s}}))
        assert type(make_step(model, 1, "auto")) is want
    path.write_text(json.dumps({key: {"torch": 2e-4, "onnx": 1e-4}}))
    with torch.no_grad():
        model.decoder.bias.add_(1.0)  # new weights, no graph for them: auto never traces one
    assert type(make_step(model, 1, "auto")) is StepRunner


def test_without_onnxruntime_onnx_falls_back_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "c"))
    _no_onnxruntime(monkeypatch)
    model = _model("lstm")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "engines.json").write_text(json.dumps({engines.shape_key(model): {"torch": 1.0, "onnx": 0.1}}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert type(make_step(model, 1, "auto")) is StepRunner  # auto: silently torch
        assert not caught
        assert type(make_step(model, 1, "onnx")) is StepRunner
    assert [w.category for w in caught] == [EngineFallback]
    assert "onnxruntime is not installed" in str(caught[0].message)


def test_engine_values_are_checked():
    with pytest.raises(ConfigError, match="engine must be auto, torch or onnx"):
        SampleConfig(engine="tensorrt")


def _checkpoint(tmp_path):
    tok = CharTokenizer.train(TINY_TEXT)
    torch.manual_seed(0)
    model = RNNLanguageModel(tiny_model_config("lstm", vocab_size=tok.vocab_size, hidden_size=8))
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model, TrainConfig(), tok)
    return path


def test_sample_command_fallback_is_one_line_and_the_text_is_unchanged(capsys, monkeypatch, tmp_path):
    ckpt = _checkpoint(tmp_path)
    code, want, err = run(capsys, "sample", ckpt, "--prime", "the ", "-n", "60", "--seed", "2", "--engine", "torch")
    assert code == 0 and err == ""
    _no_onnxruntime(monkeypatch)
    code, got, err = run(capsys, "sample", ckpt, "--prime", "the ", "-n", "60", "--seed", "2", "--engine", "onnx")
    assert code == 0 and got == want
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("charrnn: warning: --engine onnx: onnxruntime is not installed")


def test_sample_command_on_onnx_runtime(capsys, monkeypatch, tmp_path):
    _needs_onnx()
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "c"))
    ckpt = _checkpoint(tmp_path)
    outs = {}
    for engine in ("torch", "onnx", "auto"):
        code, outs[engine], err = run(capsys, "sample", ckpt, "--prime", "the ", "-n", "80", "--greedy",
                                      "--engine", engine)
        assert code == 0 and err == ""
    assert outs["onnx"] == outs["torch"] == outs["auto"]
    code, out, err = run(capsys, "sample", ckpt, "-n", "5", "--engine", "cuda")
    assert code != 0 and "Traceback" not in err
