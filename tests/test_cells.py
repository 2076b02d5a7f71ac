"""The table of cell kinds (models/cells.py).

- A cell registered here, and nowhere else (an LSTM without biases: an entry of the
  table with other constructor arguments), trains a language model, samples (greedy
  text equals an argmax loop over the model's forward), is saved and loaded, is taken by
  ``charrnn train --cell`` and exports to ONNX.
- Every built-in entry agrees with torch: its gate count with the weight shapes, its
  state layout with the module's, its one-step function and kernel with the module over
  one step, and the decoding step's generic path with its hand-written one.
- The recurrent fields' shared checks say the same thing in every config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

import charrnn
from charrnn.checkpoint import RunDirectory
from charrnn.cli.common import Cell
from charrnn.config import CELLS as CELL_NAMES
from charrnn.config import ModelConfig, TrainConfig
from charrnn.decoding import StepRunner
from charrnn.errors import ConfigError
from charrnn.models.cells import (CELLS, CellKind, layer_weights, register_cell, step_layers, unregister_cell)
from charrnn.models.lm import RNNLanguageModel
from charrnn.models.regularize import run_rnn
from charrnn.task_configs import ClassifierConfig, ConditionalConfig, Seq2SeqConfig, TaggerConfig
from charrnn.training import train
from charrnn.training.sizing import params_of
from conftest import CELLS as BUILT_IN
from conftest import TINY_TEXT
from test_cli import assert_one_line_error, run

NOBIAS = "lstm_nobias"
SPLIT = int(len(TINY_TEXT) * 0.9)


@contextlib.contextmanager
def registered(kind: CellKind):
    """``kind`` in the table for the duration, then gone (other tests never see it)."""
    register_cell(kind)
    try:
        yield kind
    finally:
        unregister_cell(kind.name)


@pytest.fixture(scope="class")
def nobias():
    with registered(CellKind(NOBIAS, nn.LSTM, gates=4, paired=True, step=torch.lstm_cell, kernel=torch._VF.lstm,
                             kwargs={"bias": False})) as kind:
        yield kind


@pytest.fixture(scope="class")
def trained(nobias, tmp_path_factory):
    """A tiny language model of the registered cell, trained with weight drop and locked
    dropout (the regularised path runs the entry's kernel layer by layer)."""
    base = tmp_path_factory.mktemp("cells")
    cfg = ModelConfig(cell=NOBIAS, layers=2, hidden_size=16, embedding_dim=8, dropout=0.1, weight_drop=0.1,
                      variational=True)
    tcfg = TrainConfig(batch_size=4, bptt=8, max_steps=60, eval_interval=30, log_interval=10, warmup_steps=2,
                       device="cpu", precision="fp32", lr=1e-2)
    events = []
    with pytest.MonkeyPatch.context() as mp:  # as conftest's _isolated, which runs after a class fixture
        mp.chdir(base)
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        result = train(TINY_TEXT[:SPLIT], TINY_TEXT[SPLIT:], cfg, tcfg, RunDirectory(base / "run"),
                       on_event=events.append)
    return base / "run", result, events


# --------------------------------------------------------------------------- a registered cell


class TestARegisteredCell:
    """The registered cell lives as long as this class's tests (its fixtures' scope)."""

    def test_a_registered_cell_is_valid_in_every_config_until_removed(self, nobias):
        assert CELL_NAMES[-1] == NOBIAS and CELLS[NOBIAS] is nobias
        for cls in (ModelConfig, ClassifierConfig, TaggerConfig, Seq2SeqConfig, ConditionalConfig):
            assert cls(cell=NOBIAS).cell == NOBIAS
        with pytest.raises(ConfigError, match="already registered"):
            register_cell(nobias)
        with pytest.raises(ConfigError, match="lowercase"):
            register_cell(dataclasses.replace(nobias, name="No Bias"))
        with pytest.raises(ConfigError, match="built in"):
            unregister_cell("lstm")
        with registered(dataclasses.replace(nobias, name="spare")):
            assert "spare" in CELL_NAMES
        assert "spare" not in CELL_NAMES and "spare" not in CELLS
        with pytest.raises(ConfigError, match="cell must be one of lstm, gru, rnn, mingru, minlstm, lstm_nobias, not 'spare'"):
            ModelConfig(cell="spare")


    def test_a_registered_cell_trains_a_language_model(self, trained):
        run_dir, result, events = trained
        progress = [e for e in events if e.kind == "progress"]
        assert progress[-1].data["train_loss"] < progress[0].data["train_loss"] - 0.5
        model = result.model
        assert type(model.rnn) is nn.LSTM and not model.rnn.bias
        assert not any("bias" in name for name, _ in model.rnn.named_parameters())
        assert params_of(model.config) == model.num_parameters()  # sizing counts its gates, and no biases


    def test_the_regularised_path_runs_the_entrys_kernel(self, nobias):
        """Weight drop and locked dropout at a vanishing rate: the per-layer kernel calls (and
        the one fused call without locked dropout) give the module's own outputs and state."""
        torch.manual_seed(0)
        rnn = nobias.make(3, 5, 2, 0.0)
        x = torch.randn(7, 4, 3)
        want, want_state = rnn(x)
        for variational in (True, False):
            got, state = run_rnn(rnn, NOBIAS, x, None, weight_drop=1e-12, between=1e-12, variational=variational,
                                 training=True)
            assert torch.allclose(got, want, atol=1e-6)
            for a, b in zip(state, want_state):
                assert torch.allclose(a, b, atol=1e-6)


    def test_a_registered_cell_samples_through_the_generic_step(self, trained):
        run_dir, _, _ = trained
        lm = charrnn.load(run_dir, device="cpu")
        model, tok = lm.model.eval(), lm.tokenizer
        assert model.config.cell == NOBIAS and not model.rnn.bias  # saved and rebuilt from its config
        runner = StepRunner(model)
        assert runner.fused is None  # no hand-written arithmetic for it: its own one-step function
        ids = tok.encode(TINY_TEXT[:20]).view(1, -1)
        with torch.no_grad():
            want, _ = model(ids)
        runner.start(None, 1)
        for t in range(ids.shape[1]):
            assert torch.allclose(runner.step(ids[:, t]), want[:, t], atol=1e-5)

        prime, made = "the c", []
        with torch.no_grad():  # greedy, the naive way: the model's forward one token at a time
            logits, state = model(tok.encode(prime).view(1, -1))
            for _ in range(40):
                scores = logits[0, -1].clone()
                scores[tok.banned_ids] = -float("inf")
                made.append(int(scores.argmax()))
                logits, state = model(torch.tensor([[made[-1]]]), state)
        gen = lm.sample(prime, greedy=True, length=40)[0]
        assert gen.tokens == made
        assert lm.generate(prime, greedy=True, length=40) == gen.text == tok.decode(made)


    def test_the_train_command_takes_a_registered_cell(self, nobias, tmp_path, capsys):
        assert Cell(NOBIAS).value == NOBIAS and [c.value for c in Cell] == CELL_NAMES
        corpus = tmp_path / "tiny.txt"
        corpus.write_text(TINY_TEXT, encoding="utf-8")
        code, out, err = run(capsys, "train", corpus, "--out", tmp_path / "run", "--cell", NOBIAS, "--layers", "1",
                             "--hidden-size", "8", "--embedding-dim", "4", "--batch-size", "4", "--bptt", "8",
                             "--max-steps", "4", "--eval-interval", "4", "--device", "cpu", "--precision", "fp32",
                             "--json")
        assert code == 0, err
        assert charrnn.load(tmp_path / "run", device="cpu").model.config.cell == NOBIAS
        assert_one_line_error(*run(capsys, "train", corpus, "--out", tmp_path / "bad", "--cell", "nosuch"), "nosuch")


    def test_a_registered_cell_exports_to_onnx(self, trained, tmp_path):
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
        from charrnn.export import export_checkpoint, session

        run_dir, _, _ = trained
        export_checkpoint(run_dir, tmp_path / "lm.onnx")
        meta = json.loads((tmp_path / "lm.json").read_text())
        assert [p["name"] for p in meta["graphs"]["step"]["inputs"]] == ["tokens", "h", "c"]  # its state is a pair
        lm = charrnn.load(run_dir, device="cpu")
        ids = lm.tokenizer.encode(TINY_TEXT[:30]).view(1, -1)
        with torch.no_grad():
            want, (h, c) = lm.model.eval()(ids)
        zeros = np.zeros((2, 1, 16), np.float32)
        sess = session(tmp_path / meta["graphs"]["step"]["file"])
        logits, h_out, c_out = sess.run(None, {"tokens": ids.numpy(), "h": zeros, "c": zeros})
        for got, w in ((logits, want), (h_out, h), (c_out, c)):
            assert float(np.abs(got - w.numpy()).max()) < 1e-4


# --------------------------------------------------------------------------- the built-in entries


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_built_in_entry_agrees_with_torch(name):
    kind = CELLS[name]
    N, I, H, L = 2, 3, 5, 2  # all different, to catch transposes
    torch.manual_seed(0)
    rnn = kind.make(I, H, L, 0.0)
    assert type(rnn) is kind.module and rnn.batch_first
    for k in range(L):
        w_ih, w_hh, b_ih, b_hh = layer_weights(rnn, k)
        assert w_ih.shape == (kind.gates * H, I if k == 0 else H)
        assert w_hh.shape == (kind.gates * H, H) and b_ih.shape == b_hh.shape == (kind.gates * H,)
    x = torch.randn(N, 1, I)
    with torch.no_grad():
        _, own_final = rnn(x)  # the module's own zero state
        zero = kind.initial(torch.zeros(L, N, H))
        out_zero, final_zero = rnn(x, zero)
        assert [t.shape for t in kind.flatten(zero)] == [(L, N, H)] * len(kind.state_names)
        assert len(kind.state_names) == len(kind.flatten(own_final)) and kind.paired == isinstance(own_final, tuple)
        for a, b in zip(kind.flatten(own_final), kind.flatten(final_zero)):
            assert torch.equal(a, b)

        state = kind.pack([torch.randn(L, N, H) for _ in kind.state_names])
        want, want_state = rnn(x, state)
        got, got_state = step_layers(rnn, name, x[:, 0], state, 0.0, False)  # the one-step function
        assert torch.allclose(got, want[:, 0], atol=1e-6)
        for a, b in zip(kind.flatten(got_state), kind.flatten(want_state)):
            assert torch.allclose(a, b, atol=1e-6)
        hx = list(kind.flatten(state)) if kind.paired else state
        weights = [w for k in range(L) for w in layer_weights(rnn, k)]
        result = kind.kernel(x, hx, weights, True, L, 0.0, False, False, True)  # the fused kernel
        assert torch.equal(result[0], want)
        for a, b in zip(result[1:], kind.flatten(want_state)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_generic_decoding_step_equals_the_hand_written_one(name):
    """A copy of a built-in entry whose one-step function the decoding step does not
    know takes the generic path, and gives the same logits and states."""
    base = CELLS[name]
    with registered(dataclasses.replace(base, name=f"{name}_copy", step=lambda *a, f=base.step: f(*a))) as copy:
        torch.manual_seed(1)
        model = RNNLanguageModel(ModelConfig(vocab_size=7, cell=name, layers=2, hidden_size=5, embedding_dim=3,
                                             dropout=0.0)).eval()
        twin = RNNLanguageModel(dataclasses.replace(model.config, cell=copy.name)).eval()
        twin.load_state_dict(model.state_dict())
        fast, generic = StepRunner(model), StepRunner(twin)
        assert fast.fused is base.step and generic.fused is None
        ids = torch.randint(0, 7, (3, 9))
        fast.start(None, 3)
        generic.start(None, 3)
        for t in range(9):
            assert torch.allclose(generic.step(ids[:, t]), fast.step(ids[:, t]), atol=1e-5)
            assert torch.allclose(generic.hc, fast.hc, atol=1e-5)
        index = torch.tensor([2, 0, 0])
        fast.reorder(index)
        generic.reorder(index)
        assert torch.allclose(generic.step(ids[:, 0]), fast.step(ids[:, 0]), atol=1e-5)


@pytest.mark.parametrize("name", BUILT_IN)
def test_params_of_counts_the_built_in_cells(name):
    cfg = ModelConfig(vocab_size=7, cell=name, layers=2, hidden_size=5, embedding_dim=3)
    assert params_of(cfg) == RNNLanguageModel(cfg).num_parameters()


# --------------------------------------------------------------------------- the shared checks

CONFIGS = [ModelConfig, ClassifierConfig, TaggerConfig, Seq2SeqConfig, ConditionalConfig]
SHARED = [
    ({"cell": "tree"}, "cell must be one of lstm, gru, rnn, mingru, minlstm, not 'tree'"),
    ({"layers": 0}, "layers must be between 1 and 64, not 0"),
    ({"layers": 65}, "layers must be between 1 and 64, not 65"),
    ({"hidden_size": 0}, "hidden_size must be between 1 and 65536, not 0"),
    ({"hidden_size": 65537}, "hidden_size must be between 1 and 65536, not 65537"),
    ({"embedding_dim": 0}, "embedding_dim must be between 1 and 65536, not 0"),
    ({"dropout": 1.0}, "dropout must be in [0, 1), not 1.0"),
    ({"dropout": -0.1}, "dropout must be in [0, 1), not -0.1"),
]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("given, message", SHARED, ids=[f"{k}={v}" for g, _ in SHARED for k, v in g.items()])
def test_the_shared_checks_say_the_same_in_every_config(cls, given, message):
    with pytest.raises(ConfigError) as info:
        cls(**given)
    assert str(info.value) == message


# Each config's keys in the order a checkpoint stores them, and its defaults of cell,
# layers, hidden_size, embedding_dim and dropout: as they were before the shared base.
STORED = {
    ModelConfig: (["vocab_size", "cell", "layers", "hidden_size", "embedding_dim", "dropout", "tie_weights",
                   "weight_drop", "input_dropout", "embedding_dropout", "variational"], ("lstm", 2, 512, 64, 0.1)),
    ClassifierConfig: (["vocab_size", "num_labels", "cell", "layers", "hidden_size", "embedding_dim", "bidirectional",
                        "pool", "dropout", "one_hot", "pad_id"], ("lstm", 1, 256, 128, 0.3)),
    TaggerConfig: (["word_vocab_size", "char_vocab_size", "num_tags", "cell", "layers", "hidden_size", "embedding_dim",
                    "char_embedding_dim", "char_hidden_size", "bidirectional", "dropout", "crf"],
                   ("lstm", 1, 128, 100, 0.33)),
    Seq2SeqConfig: (["src_vocab_size", "tgt_vocab_size", "cell", "layers", "hidden_size", "embedding_dim",
                     "bidirectional", "attention", "input_feeding", "dropout", "tie_weights"],
                    ("lstm", 1, 256, 128, 0.3)),
    ConditionalConfig: (["vocab_size", "num_labels", "cell", "layers", "hidden_size", "embedding_dim", "label_dim",
                         "label_init", "dropout", "tie_weights"], ("lstm", 2, 128, 64, 0.1)),
}


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_keeps_its_stored_keys_and_defaults(cls):
    """The recurrent fields stay where each config declares them, with its defaults, and a
    config round-trips through its stored dict (positional construction keeps working too)."""
    from charrnn.config import from_dict, to_dict

    keys, defaults = STORED[cls]
    stored = to_dict(cls())
    assert list(stored) == keys
    assert tuple(stored[k] for k in ("cell", "layers", "hidden_size", "embedding_dim", "dropout")) == defaults
    cfg = cls(cell="gru", layers=3, hidden_size=7, embedding_dim=5, dropout=0.25)
    assert from_dict(cls, json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert cls(*stored.values()) == cls()
