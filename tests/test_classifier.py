"""The sequence classifier (packing, pooling, one-hot input, autocast, config) and loading
pretrained word vectors into its embedding. Sizes are tiny and all different (V 7, E 5,
H 3, C 4, T 6, N 4) so that a transposed dimension cannot go unnoticed."""

from __future__ import annotations

import gzip

import pytest
import torch
from torch import nn

from charrnn.errors import ConfigError, CorpusError
from charrnn.task_configs import POOLS, ClassifierConfig
from charrnn.models.classifier import SequenceClassifier
from charrnn.models.embeddings import init_embedding, read_vectors
from conftest import CELLS, SCAN_CELLS

V, E, H, C, T = 7, 5, 3, 4, 6
LENGTHS = [6, 2, 4, 1]  # N = 4, unsorted on purpose


def _model(cell="lstm", bidirectional=True, pool="max", layers=2, **kw) -> SequenceClassifier:
    torch.manual_seed(0)
    args = dict(vocab_size=V, num_labels=C, cell=cell, layers=layers, hidden_size=H, embedding_dim=E,
                bidirectional=bidirectional, pool=pool, dropout=0.3)
    args.update(kw)
    return SequenceClassifier(ClassifierConfig(**args)).eval()  # eval: no dropout


def _batch(seed: int = 1, low: int = 0, high: int = V) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The sequences, and them padded into ids (N, T) with garbage ids in [low, high) and lengths (N,)."""
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(1, V, (n,), generator=g) for n in LENGTHS]
    ids = torch.randint(low, high, (len(LENGTHS), T), generator=g)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return seqs, ids, torch.tensor(LENGTHS)


def _reference_rnn(model: SequenceClassifier) -> nn.Module:
    """A fresh torch module of the same kind with the model's weights."""
    cfg = model.config
    kwargs = dict(num_layers=cfg.layers, batch_first=True, bidirectional=cfg.bidirectional)
    if cfg.cell == "rnn":
        kwargs["nonlinearity"] = "tanh"
    ref = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cfg.cell](E, H, **kwargs)
    # The model keeps one one-layer module per layer and direction; torch's stacked
    # (bidirectional) module names the same weights ..._l{k} and ..._l{k}_reverse.
    weights = {}
    for k, directions in enumerate(model.layers):
        for d, module in enumerate(directions):
            for name, value in module.state_dict().items():
                weights[name.replace("_l0", f"_l{k}" + ("_reverse" if d else ""))] = value
    ref.load_state_dict(weights)
    return ref.eval()


def _hand_pool(model: SequenceClassifier, out: torch.Tensor) -> torch.Tensor:
    """out (L, D) of one unpadded sequence -> its pooled vector (D,), by the formulas."""
    pool = model.config.pool
    if pool == "last":
        if model.config.bidirectional:
            return torch.cat([out[-1, :H], out[0, H:]])  # forward at the end, backward at the start
        return out[-1]
    if pool == "mean":
        return out.mean(dim=0)
    if pool == "max":
        return out.max(dim=0).values
    w, b, v = model.attn_proj.weight, model.attn_proj.bias, model.attn_score.weight[0]
    scores = torch.tanh(out @ w.T + b) @ v  # (L,)
    return (torch.softmax(scores, dim=0)[:, None] * out).sum(dim=0)


ALL = pytest.mark.parametrize("cell", list(CELLS))
BI = pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
POOL = pytest.mark.parametrize("pool", POOLS)


@pytest.mark.parametrize("cell", list(CELLS) + SCAN_CELLS)
@BI
@POOL
def test_sequence_alone_equals_sequence_in_padded_batch(cell, bidirectional, pool):
    model = _model(cell, bidirectional, pool)
    seqs, ids, lengths = _batch()
    with torch.no_grad():
        batch = model(ids, lengths)  # (N, C)
        assert batch.shape == (len(LENGTHS), C) and batch.dtype == torch.float32
        for i, s in enumerate(seqs):
            alone = model(s[None], torch.tensor([len(s)]))  # (1, C)
            torch.testing.assert_close(batch[i], alone[0], atol=1e-6, rtol=0)


@ALL
@BI
@POOL
@pytest.mark.parametrize("layers", [1, 2])
def test_encode_matches_hand_built_reference(cell, bidirectional, pool, layers):
    model = _model(cell, bidirectional, pool, layers=layers)
    ref = _reference_rnn(model)
    seqs, ids, lengths = _batch(seed=2)
    with torch.no_grad():
        pooled = model.encode(ids, lengths)  # (N, D)
        assert pooled.shape == (len(LENGTHS), H * (2 if bidirectional else 1))
        for i, s in enumerate(seqs):
            out, _ = ref(model.embedding(s)[None])  # (1, L, D), no padding at all
            torch.testing.assert_close(pooled[i], _hand_pool(model, out[0]), atol=1e-6, rtol=0)
        torch.testing.assert_close(model(ids, lengths), model.head(pooled), atol=1e-6, rtol=0)


@pytest.mark.parametrize("garbage", [(-50, 0), (V, 1000)], ids=["negative", "too-large"])
@pytest.mark.parametrize("one_hot", [False, True])
def test_out_of_range_padding_ids_are_harmless(garbage, one_hot):
    model = _model(one_hot=one_hot)
    seqs, ids, lengths = _batch(low=garbage[0], high=garbage[1])
    _, clean, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, lengths), model(clean, lengths), atol=1e-6, rtol=0)


def test_padding_gets_no_gradient():
    model = _model(cell="gru", pool="mean")
    ids = torch.tensor([[1, 2, 6, 6], [3, 6, 6, 6]])  # id 6 only ever in the padding
    model(ids, torch.tensor([2, 1])).sum().backward()
    grad = model.embedding.weight.grad  # (V, E)
    assert grad[6].abs().sum() == 0 and grad[0].abs().sum() == 0  # garbage and pad_id rows
    assert grad[1].abs().sum() > 0 and grad[3].abs().sum() > 0


@ALL
@BI
def test_one_hot_equals_a_fixed_identity_embedding(cell, bidirectional):
    one_hot = _model(cell, bidirectional, "attention", one_hot=True)
    dense = _model(cell, bidirectional, "attention", embedding_dim=V)
    dense.load_state_dict({**one_hot.state_dict(), "embedding.weight": torch.eye(V)})
    assert one_hot.embedding is None
    assert one_hot.num_parameters() == dense.num_parameters() - V * V
    _, ids, lengths = _batch(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(one_hot(ids, lengths), dense(ids, lengths), atol=1e-6, rtol=0)


@ALL
@POOL
def test_logits_stay_float32_under_bf16_autocast(cell, pool):
    from charrnn.runtime import cpu_has_fast_bf16

    if not cpu_has_fast_bf16():  # oneDNN then has no bf16 LSTM: training falls back to fp32 (runtime.py)
        pytest.skip("this CPU has no native bf16")
    model = _model(cell, True, pool)
    _, ids, lengths = _batch()
    with torch.no_grad():
        full = model(ids, lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids, lengths)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, full, atol=0.1, rtol=0.1)


def test_num_parameters_counts_every_weight():
    model = _model("lstm", bidirectional=False, pool="attention", layers=1)
    lstm = 4 * H * (E + H + 2)
    expected = V * E + lstm + (H * H + H) + H + (H * C + C)
    assert model.num_parameters() == expected


def test_defaults_build():
    cfg = ClassifierConfig(vocab_size=V, num_labels=2)
    assert SequenceClassifier(cfg).sentence_dim == 2 * cfg.hidden_size


@pytest.mark.parametrize("kw", [
    {"cell": "transformer"}, {"pool": "sum"}, {"layers": 0}, {"layers": 65}, {"hidden_size": 0},
    {"embedding_dim": 0}, {"dropout": 1.0}, {"dropout": -0.1}, {"dropout": float("nan")},
    {"vocab_size": -1}, {"num_labels": -1}, {"pad_id": -1}, {"pad_id": V}, {"layers": 2.0},
])
def test_config_validation_raises_config_error(kw):
    args = dict(vocab_size=V, num_labels=C)
    args.update(kw)
    with pytest.raises(ConfigError):
        ClassifierConfig(**args)


@pytest.mark.parametrize("kw", [{"vocab_size": 0}, {"num_labels": 1}])
def test_model_needs_vocabulary_and_labels(kw):
    args = dict(vocab_size=V, num_labels=C)
    args.update(kw)
    with pytest.raises(ValueError):
        SequenceClassifier(ClassifierConfig(**args))


@pytest.mark.parametrize("lengths", [[6, 2, 0, 1], [7, 2, 4, 1], [6, 2, 4]])
def test_bad_lengths_are_rejected(lengths):
    _, ids, _ = _batch()
    with pytest.raises(ValueError):
        _model()(ids, torch.tensor(lengths))


# --- pretrained vectors ---------------------------------------------------------------

GLOVE = "the 0.1 0.2 0.3\ncat 1 2 3\n. . . 4 5 6\nDog 7 8 9\n"
WORD2VEC = "3 2\nthe 0.5 -0.5 \nbird 1e-1 2.5 \nfish 3 4 \n"  # word2vec writes a trailing space


def _write(tmp_path, name, text):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["glove.txt", "glove.txt.gz"])
def test_read_glove(tmp_path, name):
    vectors, dim = read_vectors(_write(tmp_path, name, GLOVE))
    assert dim == 3
    assert set(vectors) == {"the", "cat", ". . .", "Dog"}
    torch.testing.assert_close(vectors["cat"], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(vectors[". . ."], torch.tensor([4.0, 5.0, 6.0]))


def test_read_word2vec_header_and_wanted(tmp_path):
    vectors, dim = read_vectors(_write(tmp_path, "w2v.txt", WORD2VEC), wanted={"bird", "absent"})
    assert dim == 2 and list(vectors) == ["bird"]
    torch.testing.assert_close(vectors["bird"], torch.tensor([0.1, 2.5]))


def test_init_embedding_copies_found_rows_with_lowercase_fallback(tmp_path):
    path = _write(tmp_path, "glove.txt", GLOVE)
    torch.manual_seed(0)
    emb = nn.Embedding(6, 3)
    before = emb.weight.detach().clone()
    words = ["<pad>", "the", "Cat", "dog", "zebra"]  # "Cat" -> "cat"; "dog" is only "Dog" in the file
    assert init_embedding(emb, words, path, freeze=False) == (2, 5)
    w = emb.weight.detach()
    torch.testing.assert_close(w[1], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(w[2], torch.tensor([1.0, 2.0, 3.0]))
    for row in (0, 3, 4, 5):
        torch.testing.assert_close(w[row], before[row])
    assert emb.weight.requires_grad


@pytest.mark.parametrize("freeze", [True, False])
def test_init_embedding_freeze(tmp_path, freeze):
    emb = nn.Embedding(3, 2)
    found = init_embedding(emb, ["the", "fish", "x"], _write(tmp_path, "w2v.txt.gz", WORD2VEC), freeze)
    assert found == (2, 3)
    assert emb.weight.requires_grad is (not freeze)


def test_init_embedding_dimension_mismatch(tmp_path):
    with pytest.raises(ConfigError, match="vectors have 3 dimensions, the model's embedding has 4"):
        init_embedding(nn.Embedding(5, 4), ["the"], _write(tmp_path, "glove.txt", GLOVE), freeze=True)


@pytest.mark.parametrize("text, match", [
    ("the 0.1 0.2 0.3\ncat 1 2\n", "line 2 has 3 fields"),
    ("the 0.1 0.2 0.3\ncat 1 2 3 4\n", "line 2 has 5 fields"),
    ("the 0.1 0.2 0.3\ncat 1 x 3\n", "line 2: 'x' is not a number"),
    ("the 0.1 0.2 0.3\ncat 1 nan 3\n", "line 2 holds a value that is not a finite"),
    ("3 2\nthe 0.5 -0.5\n", "announces 3 vectors but the file holds 1"),
    ("2 2\nthe 0.5\n", "line 2 has 2 fields"),
    ("", "holds no word vectors"),
    ("\n\n", "holds no word vectors"),
    ("onlyaword\n", "line 1 has a single field"),
])
def test_bad_vector_files(tmp_path, text, match):
    with pytest.raises(CorpusError, match=match):
        read_vectors(_write(tmp_path, "bad.txt", text))


def test_vector_file_not_utf8_and_missing(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("the 0.1 0.2\ncaf\u00e9 1 2\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="line 2 is not valid UTF-8"):
        read_vectors(path)
    with pytest.raises(CorpusError, match="cannot read word vectors"):
        read_vectors(tmp_path / "missing.txt")
    not_gz = tmp_path / "plain.txt.gz"
    not_gz.write_text(GLOVE, encoding="utf-8")
    with pytest.raises(CorpusError, match="cannot read word vectors"):
        read_vectors(not_gz)
