"""Dynamic evaluation (tasks/dynamic.py): never conditions on the future, equals static
scoring with no adaptation, updates as the rule says, leaves the model as it found it."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import CELLS, TINY_TEXT, tiny_model_config

from charrnn.errors import ConfigError
from charrnn.models.lm import RNNLanguageModel
from charrnn.tasks.dynamic import DynamicConfig, dynamic_evaluate
from charrnn.tasks.perplexity import evaluate


def _model(cell="lstm", seed=0, **kw):
    torch.manual_seed(seed)
    return RNNLanguageModel(tiny_model_config(cell, vocab_size=11, **kw))


def _ids(n=200, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, (n,), generator=g)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("rule", ["rms", "sgd"])
@pytest.mark.parametrize("streams", [1, 3])
def test_the_loss_of_a_token_never_depends_on_what_follows_it(cell, rule, streams):
    model = _model(cell)
    cfg = DynamicConfig(lr=0.05 if rule == "sgd" else 0.01, decay=0.02, segment=7, rule=rule)
    ids = _ids(240)
    other = ids.clone()
    cut = 131  # mid-segment: tokens after it change
    other[cut:] = (other[cut:] + 5) % 11
    _, a = dynamic_evaluate(model, ids, cfg, streams=streams, warmup=20, per_token=True)
    _, b = dynamic_evaluate(model, other, cfg, streams=streams, warmup=20, per_token=True)
    # Target i is ids[i + 1]: the losses of targets before the cut are those of the prefix.
    assert torch.equal(a[: cut - 1], b[: cut - 1])
    assert not torch.equal(a[cut:], b[cut:])


@pytest.mark.parametrize("cell", CELLS)
def test_without_adaptation_it_is_the_static_score(cell):
    model = _model(cell)
    ids = _ids(300)
    static = evaluate(model, ids, streams=1)
    dyn = dynamic_evaluate(model, ids, DynamicConfig(lr=0.0, decay=0.0, segment=13))
    assert dyn.tokens == static.tokens == 299
    assert dyn.nll == pytest.approx(static.nll, rel=1e-6)
    # ... and with streams, the static layout's score (each stream warmed up the same way)
    static4 = evaluate(model, ids, streams=4, warmup=16)
    dyn4 = dynamic_evaluate(model, ids, DynamicConfig(lr=0.0, segment=13), streams=4, warmup=16)
    assert dyn4.nll == pytest.approx(static4.nll, rel=1e-6)


def test_second_segment_is_scored_by_the_hand_updated_weights():
    model, lr, decay, seg = _model("gru"), 0.1, 0.3, 6
    ids = _ids(2 * seg + 1)
    _, losses = dynamic_evaluate(model, ids, DynamicConfig(lr=lr, decay=decay, segment=seg, rule="sgd"),
                                 per_token=True)
    ref = copy.deepcopy(model).eval()
    x, y = ids[:-1].view(1, -1), ids[1:]
    logits, state = ref(x[:, :seg])
    first = F.cross_entropy(logits[0], y[:seg], reduction="none")
    first.mean().backward()
    with torch.no_grad():
        for p in ref.parameters():
            p0 = p.detach().clone()
            p -= lr * p.grad  # theta_1 = theta_0 - lr g + decay (theta_0 - theta_0)
            assert torch.equal(p0 - lr * p.grad, p)
        logits2, _ = ref(x[:, seg:], tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach())
    second = F.cross_entropy(logits2[0], y[seg:], reduction="none")
    torch.testing.assert_close(losses[:seg], first.detach())
    torch.testing.assert_close(losses[seg:], second)


def test_the_model_is_left_exactly_as_found_and_in_its_mode():
    model = _model("lstm", dropout=0.2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dynamic_evaluate(model, _ids(100), DynamicConfig(lr=0.5, decay=0.1, segment=9))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_adapting_to_a_repetitive_text_lowers_its_loss():
    model = _model("lstm", hidden_size=16)
    ids = torch.tensor([1, 2, 3, 4, 5, 6] * 60)
    static = dynamic_evaluate(model, ids, DynamicConfig(lr=0.0))
    adapted = dynamic_evaluate(model, ids, DynamicConfig(lr=3e-2, segment=12, rule="rms"))
    assert adapted.bpc < 0.5 * static.bpc


def test_unknown_targets_are_not_scored():
    model = _model()
    ids = _ids(80)
    ids[10] = ids[40] = 3
    dyn = dynamic_evaluate(model, ids, DynamicConfig(lr=0.0), unk_id=3)
    static = evaluate(model, ids, unk_id=3, streams=1)
    assert dyn.unknown == static.unknown >= 2 and dyn.tokens == static.tokens
    assert dyn.nll == pytest.approx(static.nll, rel=1e-6)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_api_scores_dynamically_with_every_tokenizer(kind, tmp_path):
    import charrnn
    from charrnn.checkpoint import save_checkpoint
    from charrnn.config import TrainConfig
    from charrnn.text.tokenizers import CharTokenizer

    if kind == "char":
        tok = CharTokenizer.train(TINY_TEXT)
    else:
        from test_tokenizers import subword

        tok = subword("bpe")
    torch.manual_seed(0)
    model = RNNLanguageModel(tiny_model_config("lstm", vocab_size=tok.vocab_size))
    save_checkpoint(tmp_path / "ck.safetensors", model, TrainConfig(), tok)
    lm = charrnn.load(tmp_path / "ck.safetensors", device="cpu")
    text = TINY_TEXT[:400]
    static = lm.evaluate(text, streams=1)
    same = lm.evaluate_dynamic(text, DynamicConfig(lr=0.0))
    assert same.chars == static.chars and same.bpc == pytest.approx(static.bpc, rel=1e-6)
    better = lm.evaluate_dynamic(text, DynamicConfig(lr=1e-2, segment=20))
    assert better.bpc < static.bpc


def test_bad_settings_are_config_errors():
    for kw in (dict(lr=-1.0), dict(decay=1.0), dict(segment=0), dict(rule="adam"), dict(rms_beta=1.0)):
        with pytest.raises(ConfigError):
            DynamicConfig(**kw)


def test_progress_reports_every_segment_up_to_the_total():
    model, calls = _model(), []
    ids = _ids(101)
    dynamic_evaluate(model, ids, DynamicConfig(segment=30), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(30, 100), (60, 100), (90, 100), (100, 100)]
    calls.clear()
    dynamic_evaluate(model, _ids(200), DynamicConfig(segment=50), streams=2, warmup=20,
                     progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert calls[-1][0] == total > 199 and all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
