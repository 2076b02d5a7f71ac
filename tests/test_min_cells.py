"""minGRU and minLSTM (models/minrnn.py), against reference computations:

- every way of running the scan (the CPU's walk, the log-space parallel scan, the exported
  graph's pairwise form) equals a naive float64 loop over the paper's equations, for
  lengths 1, 2, 7 and 300, in float32 and with bf16 products;
- the walk's hand-written gradient (and autograd through the others) equals autograd
  through the naive loop, and passes gradcheck;
- a window run in two halves with the state carried equals it run whole, for the stack
  and for the language model; the recurrent step equals the window's outputs;
- greedy decoding through the decoding step equals an argmax loop over the forward;
- the model-size chooser counts their parameters; weight drop is refused in one line;
- the gradient diagnostics and the memory task run them.

Padding invariance (classifier, tagger), bitwise resume and ONNX export are in
test_classifier.py, test_tagger.py, test_resume.py and test_export.py with the other cells.
"""

from __future__ import annotations

import json

import pytest
import torch

import charrnn
from charrnn.config import ModelConfig
from charrnn.decoding import StepRunner
from charrnn.errors import ConfigError
from charrnn.models.lm import RNNLanguageModel
from charrnn.models.minrnn import MinScan, ScanStack, scan
from charrnn.training.sizing import params_of
from conftest import SCAN_CELLS, TINY_TEXT
from test_cli import assert_one_line_error, run

VARIANTS = ("gru", "lstm")
METHODS = ("loop", "log", "pairwise")


def naive(variant: str, gates: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The paper's equations, one step at a time, in float64."""
    gates, h = gates.double(), h0.double()

    def g(x):
        return torch.where(x >= 0, x + 0.5, 1 / (1 + torch.exp(-x)))

    out = []
    for t in range(gates.shape[1]):
        if variant == "gru":
            k, pre = gates[:, t].chunk(2, dim=-1)
            z = 1 / (1 + torch.exp(-k))
            h = (1 - z) * h + z * g(pre)
        else:
            f, i, pre = gates[:, t].chunk(3, dim=-1)
            f, i = 1 / (1 + torch.exp(-f)), 1 / (1 + torch.exp(-i))
            h = f / (f + i) * h + i / (f + i) * g(pre)
        out.append(h)
    return torch.stack(out, 1)


def _gates(variant: str, n: int, t: int, h: int, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, (2 if variant == "gru" else 3) * h, generator=g) * scale


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("length", [1, 2, 7, 300])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_scan_equals_a_naive_loop(variant, length, method):
    gates = _gates(variant, 3, length, 8)
    h0 = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    want = naive(variant, gates, h0)
    got = scan(variant, gates, h0, method)
    assert got.dtype == torch.float32 and got.shape == (3, length, 8)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    # from zeros (h0 None), the first state is b_1 alone
    torch.testing.assert_close(scan(variant, gates, None, method).double(), naive(variant, gates, 0 * h0),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_scan_with_bf16_products_stays_within_bf16_rounding(variant, method):
    """Gates made by a bf16 product (what autocast gives): the scan runs in float32 on
    them and is within bf16's rounding of the float32 result."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, (2 if variant == "gru" else 3) * 16)
    x = torch.randn(2, 300, 16)
    h0 = torch.randn(2, 16)
    want = naive(variant, layer(x).detach(), h0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gates = layer(x)
        assert gates.dtype == torch.bfloat16
        got = scan(variant, gates.detach(), h0, method)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_walks_gradient_passes_gradcheck(variant):
    g = torch.Generator().manual_seed(0)
    gates = (_gates(variant, 2, 9, 3) + 0.01).double().requires_grad_()  # no pre-activation at g's kink
    h0 = torch.randn(2, 3, generator=g, dtype=torch.double).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, h: MinScan.apply(x, h, variant == "lstm"), (gates, h0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_scans_gradient_equals_autograd_through_the_naive_loop(variant, method):
    """The walk's hand-written gradient, and autograd through the other two, against autograd
    through the float64 loop (measured: the walk within 6e-7 of it, log space 2e-5)."""
    grads = {}
    for how in ("naive", method):
        gates = _gates(variant, 2, 40, 6).to(torch.float64 if how == "naive" else torch.float32).requires_grad_()
        h0 = torch.randn(2, 6, generator=torch.Generator().manual_seed(3)).to(gates.dtype).requires_grad_()
        weights = torch.randn(2, 40, 6, generator=torch.Generator().manual_seed(4)).to(gates.dtype)
        out = naive(variant, gates, h0) if how == "naive" else scan(variant, gates, h0, method)
        (out * weights).sum().backward()
        grads[how] = (gates.grad.double(), h0.grad.double())
    for got, want in zip(grads[method], grads["naive"]):
        torch.testing.assert_close(got, want, rtol=0, atol=(2e-6 if method == "loop" else 5e-5))


@pytest.mark.parametrize("ffn", [0, 4])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_two_halves_with_the_state_carried_equal_the_whole_window_and_the_step(variant, layers, ffn):
    torch.manual_seed(0)
    stack = ScanStack(5, 8, layers, variant=variant, ffn_mult=ffn).eval()
    x = torch.randn(3, 30, 5)
    state = torch.randn(layers, 3, 8)
    with torch.no_grad():
        whole, final = stack(x, state)
        first, mid = stack(x[:, :11], state)
        second, end = stack(x[:, 11:], mid)
        torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=1e-6)
        torch.testing.assert_close(end, final, rtol=0, atol=1e-6)
        steps, s = [], state
        for t in range(30):
            out, s = stack.step(x[:, t], s)
            steps.append(out)
        torch.testing.assert_close(torch.stack(steps, 1), whole, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s, final, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", SCAN_CELLS)
def test_language_model_halves_equal_the_whole_and_greedy_decoding_equals_an_argmax_loop(cell):
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=11, cell=cell, layers=2, hidden_size=12, embedding_dim=6)).eval()
    ids = torch.randint(0, 11, (2, 40))
    with torch.no_grad():
        whole, final = model(ids)
        a, mid = model(ids[:, :17])
        b, end = model(ids[:, 17:], mid)
    torch.testing.assert_close(torch.cat([a, b], 1), whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(end, final, rtol=0, atol=1e-6)

    runner = StepRunner(model)
    assert runner.stack is not None  # the scan cell has a step of its own (decoding/scan_step.py)
    made, logits, state = [], None, None
    with torch.no_grad():
        logits, state = model(ids[:1, :5])
        runner.start(None, 1)
        for t in range(5):
            stepped = runner.step(ids[0, t : t + 1])
        torch.testing.assert_close(stepped, logits[:, -1], rtol=1e-5, atol=1e-5)
        for _ in range(30):  # greedy: the stepped logits against the forward over one token
            made.append(int(logits[0, -1].argmax()))
            logits, state = model(torch.tensor([[made[-1]]]), state)
            stepped = runner.step(torch.tensor([made[-1]]))
            torch.testing.assert_close(stepped, logits[:, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("cell", SCAN_CELLS)
def test_the_size_chooser_counts_every_parameter(cell, tie):
    cfg = ModelConfig(vocab_size=13, cell=cell, layers=3, hidden_size=16, embedding_dim=16 if tie else 7,
                      tie_weights=tie)
    assert params_of(cfg) == RNNLanguageModel(cfg).num_parameters()


def test_weight_drop_is_refused_for_a_cell_without_recurrent_weights(tmp_path, capsys):
    with pytest.raises(ConfigError, match="weight_drop"):
        ModelConfig(cell="mingru", weight_drop=0.2)
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    assert_one_line_error(*run(capsys, "train", corpus, "--out", tmp_path / "r", "--cell", "minlstm",
                               "--weight-drop", "0.2"), "weight_drop")


@pytest.mark.parametrize("cell", SCAN_CELLS)
def test_a_run_trains_samples_and_reloads(cell, tmp_path, capsys):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    code, out, err = run(capsys, "train", corpus, "--out", tmp_path / "run", "--cell", cell, "--hidden-size", "16",
                         "--embedding-dim", "8", "--batch-size", "4", "--bptt", "16", "--max-steps", "40",
                         "--eval-interval", "20", "--device", "cpu", "--precision", "fp32", "--lr", "0.01", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps"] == 40 and summary["val_bpc"] < 4.0  # below uniform over ~30 symbols (4.9 bits)
    lm = charrnn.load(tmp_path / "run", device="cpu")
    assert type(lm.model.rnn) is ScanStack.__subclasses__()[SCAN_CELLS.index(cell)]
    assert lm.generate("the ", seed=1, length=30) == lm.generate("the ", seed=1, length=30)
    assert len(lm.generate("the ", greedy=True, length=30)) >= 30


def test_the_gradient_picture_and_the_memory_task_take_the_scan_cells(capsys):
    from charrnn.diagnostics.gradients import fresh_profile

    profile = fresh_profile("mingru", hidden_size=8, length=12, sequences=3, warmup=4)
    assert len(profile.norms) == 12 and all(n > 0 for n in profile.norms)
    assert profile.norms[0] > profile.norms[-1]  # a gated linear recurrence forgets at its gates' rate
    code, out, err = run(capsys, "diagnose", "memory", "--cells", "mingru,minlstm", "--lags", "3",
                         "--hidden-size", "8", "--steps", "5", "--json")
    assert code == 0, err
    assert {r["cell"] for r in json.loads(out)["results"]} == {"mingru", "minlstm"}
