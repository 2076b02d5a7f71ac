"""The tagger model and the tagging task: against torch's own modules, padding, direction,
the character encoder, word dropout, batches and training."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import TrainConfig
from charrnn.task_configs import TaggerConfig
from charrnn.models.tagger import Tagger
from charrnn.tasks.tag import (IGNORE, Encoded, TaggedBatches, TaggedData, TagTask, TagVocab, encode_sentences,
                               tag_encoded, tag_inputs)
from charrnn.text.tagged import Sentence

CPU = torch.device("cpu")
from conftest import CELLS, SCAN_CELLS


def _config(cell="lstm", bidirectional=True, crf=False, chars=5, layers=1) -> TaggerConfig:
    return TaggerConfig(word_vocab_size=12, char_vocab_size=9, num_tags=4, cell=cell, layers=layers, hidden_size=6,
                        embedding_dim=5, char_embedding_dim=4, char_hidden_size=chars, bidirectional=bidirectional,
                        dropout=0.0, crf=crf)


def _sentence(rng: torch.Generator, n: int) -> Encoded:
    words = torch.randint(0, 11, (n,), generator=rng).tolist()  # 0..10: 11 is padding
    spellings = [tuple(torch.randint(0, 8, (int(torch.randint(1, 5, (1,), generator=rng)),), generator=rng).tolist())
                 for _ in range(n)]
    return Encoded(words, spellings, torch.randint(0, 4, (n,), generator=rng).tolist())


def _emissions(model: Tagger, sents: list[Encoded]) -> torch.Tensor:
    return model(*tag_inputs(sents, model.config).model_inputs(CPU))


def _rnn(cell: str, *args, **kwargs) -> nn.Module:
    return {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](*args, batch_first=True, **kwargs)


def _copy(reference: nn.Module, directions: nn.ModuleList) -> None:
    """Copy one layer's direction modules into a bidirectional torch module of one layer."""
    for d, module in enumerate(directions):
        suffix = "_reverse" if d else ""
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference, f"{name}_l0{suffix}").data.copy_(getattr(module, f"{name}_l0"))


@pytest.mark.parametrize("cell", CELLS)
def test_emissions_match_torch_modules(cell):
    """One sentence through the tagger equals the same weights in nn.Embedding, a
    bidirectional nn.LSTM/GRU/RNN over each word's characters, one over the sentence and
    nn.Linear, computed by hand."""
    torch.manual_seed(0)
    model = Tagger(_config(cell)).eval()
    sent = _sentence(torch.Generator().manual_seed(1), 5)
    got = _emissions(model, [sent])[0]  # (T, K)

    char_rnn = _rnn(cell, 4, 5, bidirectional=True)
    _copy(char_rnn, model.char_layers[0])
    word_rnn = _rnn(cell, 5 + 10, 6, bidirectional=True)
    _copy(word_rnn, model.layers[0])
    with torch.no_grad():
        spelled = []
        for sp in sent.spellings:
            _, h = char_rnn(model.char_embedding(torch.tensor([sp])))
            h = h[0] if cell == "lstm" else h  # (2, 1, Hc)
            spelled.append(torch.cat([h[0, 0], h[1, 0]]))
        x = torch.cat([model.word_embedding(torch.tensor(sent.words)), torch.stack(spelled)], dim=-1)
        out, _ = word_rnn(x.unsqueeze(0))
        want = model.head(out[0])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS + SCAN_CELLS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_changes_a_result(cell, bidirectional):
    torch.manual_seed(0)
    model = Tagger(_config(cell, bidirectional, layers=2)).eval()
    rng = torch.Generator().manual_seed(2)
    sents = [_sentence(rng, n) for n in (6, 1, 3, 4)]
    batch = _emissions(model, sents)
    for i, s in enumerate(sents):
        alone = _emissions(model, [s])[0]
        torch.testing.assert_close(batch[i, : len(s.words)], alone, rtol=1e-5, atol=1e-6)
    # Garbage in the padding positions of the inputs changes nothing either.
    inp = tag_inputs(sents, model.config)
    mask = inp.mask
    inp.words[~mask] = 10_000
    inp.spelling[~mask] = 10_000
    torch.testing.assert_close(model(*inp.model_inputs(CPU))[mask], batch[mask])


@pytest.mark.parametrize("cell", CELLS + SCAN_CELLS)
def test_bidirectional_output_depends_on_later_tokens(cell):
    """Changing the last word changes the emissions at position 0 with a bidirectional
    tagger, and never with a unidirectional one."""
    torch.manual_seed(0)
    rng = torch.Generator().manual_seed(3)
    sent = _sentence(rng, 5)
    changed = dataclasses.replace(sent, words=sent.words[:-1] + [(sent.words[-1] + 1) % 11],
                                  spellings=sent.spellings[:-1] + [(7, 7, 7)])
    for bidirectional in (True, False):
        model = Tagger(_config(cell, bidirectional)).eval()
        a, b = _emissions(model, [sent])[0], _emissions(model, [changed])[0]
        assert not torch.allclose(a[-1], b[-1])
        if bidirectional:
            assert not torch.allclose(a[0], b[0])
        else:
            torch.testing.assert_close(a[:-1], b[:-1], rtol=0, atol=0)


def test_char_encoder_gives_a_word_the_same_features_in_any_sentence():
    torch.manual_seed(0)
    model = Tagger(_config()).eval()
    word = (3, 1, 4, 1)
    rng = torch.Generator().manual_seed(4)
    batches = [[_sentence(rng, 3), Encoded([5, 2], [(2,), word], [0, 0])],
               [Encoded([9, 1, 2, 7], [(6, 6, 6, 6, 6, 6), (1,), word, (2, 5)], [0] * 4)]]
    features = []
    for sents in batches:
        inp = tag_inputs(sents, model.config)
        spelled = model.spell(inp.chars, inp.char_lengths)
        row = next(r for r in range(inp.chars.shape[0])
                   if tuple(inp.chars[r, : int(inp.char_lengths[r])].tolist()) == word)
        features.append(spelled[row])
    torch.testing.assert_close(features[0], features[1], rtol=1e-6, atol=1e-7)


def test_each_distinct_spelling_is_encoded_once_per_batch():
    sents = [Encoded([1, 2, 1], [(1, 2), (3,), (1, 2)], [0, 1, 0]), Encoded([4], [(1, 2)], [2])]
    inp = tag_inputs(sents, _config())
    assert inp.chars.shape[0] == 2
    assert inp.spelling[0, 0] == inp.spelling[0, 2] == inp.spelling[1, 0]
    assert inp.tags[1].tolist() == [2, IGNORE, IGNORE]


def test_no_char_encoder_reads_words_only():
    torch.manual_seed(0)
    model = Tagger(_config(chars=0)).eval()
    assert model.char_layers is None and model.char_embedding is None
    sent = _sentence(torch.Generator().manual_seed(5), 4)
    respelled = dataclasses.replace(sent, spellings=[(7,)] * 4)
    torch.testing.assert_close(_emissions(model, [sent]), _emissions(model, [respelled]))


def _data() -> TaggedData:
    train = [Sentence(["The", "cat", "sat"], ["DET", "NOUN", "VERB"], 1),
             Sentence(["A", "dog", "ran", "fast"], ["DET", "NOUN", "VERB", "ADV"], 5),
             Sentence(["the", "dog", "sat"], ["DET", "NOUN", "VERB"], 10)]
    val = [Sentence(["A", "cow", "ran"], ["DET", "NOUN", "VERB"], 1)]
    return TaggedData(train, val, TagVocab.train(train, val), None)


def test_vocabulary_lowercases_words_and_marks_unseen_tokens():
    v = _data().vocab
    assert v.words == ["a", "cat", "dog", "fast", "ran", "sat", "the"]
    assert v.word_ids(["THE", "cow"]) == [7, 0]
    assert v.tags == ["ADV", "DET", "NOUN", "VERB"]
    assert v.word_vocab_size == 9 and v.char_vocab_size == v.chars.vocab_size + 1
    enc = encode_sentences(v, [Sentence(["cow", "the"], ["NOUN", "PUNCT"], 1)])[0]
    assert enc.words == [0, 7] and enc.tags == [2, IGNORE]


def test_word_dropout_replaces_rare_words_more_often():
    data = _data()
    task = TagTask(data, TaggerConfig(), TrainConfig(batch_size=2), word_dropout=0.25)
    v = data.vocab
    # "dog" occurs twice, "cat" once: p = a / (a + c).
    assert task.drop_p[v.index["cat"]] == pytest.approx(0.25 / 1.25)
    assert task.drop_p[v.index["dog"]] == pytest.approx(0.25 / 2.25)
    torch.manual_seed(0)
    cat = v.index["cat"]
    dropped = sum(task._dropped([cat] * 1000).count(0) for _ in range(5)) / 5000
    assert abs(dropped - 0.2) < 0.03
    assert TagTask(data, TaggerConfig(), TrainConfig(), word_dropout=0.0)._dropped([cat] * 50) == [cat] * 50


def test_batches_resume_where_they_stopped():
    lengths = [3, 5, 2, 8, 1, 4, 4, 6, 2]
    a = TaggedBatches(lengths, 2, seed=7)
    first = [a.next() for _ in range(12)]
    b = TaggedBatches(lengths, 2, seed=7)
    b.epoch, b.position = a.epoch, a.position
    a_more, b_more = [a.next() for _ in range(4)], [b.next() for _ in range(4)]
    assert a_more == b_more
    epoch0 = [m for m, _ in first[:5]]
    assert sorted(i for m in epoch0 for i in m) == list(range(9))
    assert [new for _, new in first] == [False] * 5 + [True] + [False] * 4 + [True, False]


@pytest.mark.parametrize("crf", [False, True])
def test_task_learns_a_toy_tagging_problem(crf):
    """A few hundred steps on a toy language take validation accuracy to 1, including an
    unseen word whose suffix gives its tag away."""
    torch.manual_seed(0)
    nouns, verbs = ["cat", "dog", "cow", "hen"], ["runs", "sits", "eats", "sees"]
    train = [Sentence(["the", n, v], ["DET", "NOUN", "VERB"], 1) for n in nouns for v in verbs[:3]]
    val = [Sentence(["the", "dog", "sees"], ["DET", "NOUN", "VERB"], 1)]
    data = TaggedData(train, val, TagVocab.train(train, val), None)
    cfg = TrainConfig(batch_size=4)
    task = TagTask(data, TaggerConfig(hidden_size=16, embedding_dim=8, char_hidden_size=8, crf=crf, dropout=0.0),
                   cfg, word_dropout=0.25)
    model = task.build_model(CPU)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(60):
        loss, n = task.loss(model, task.batches.next(), CPU, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    metrics = task.validate(model, None)
    assert metrics["val_accuracy"] == 1.0
    assert metrics["val_unseen_accuracy"] == 1.0  # "sees" never occurs in training
    preds, probs, total = tag_encoded(model, task.val_enc, CPU)
    assert [data.vocab.tags[t] for t in preds[0]] == ["DET", "NOUN", "VERB"]
    assert all(0.5 < p <= 1.0 for p in probs[0])
    assert total / 3 == pytest.approx(metrics["val_loss"])


def test_crf_loss_is_the_sentence_nll_per_token():
    torch.manual_seed(0)
    data = _data()
    task = TagTask(data, TaggerConfig(hidden_size=8, embedding_dim=4, char_hidden_size=3, crf=True, dropout=0.0),
                   TrainConfig(batch_size=3), word_dropout=0.0)
    model = task.build_model(CPU).eval()
    members, flag = task.batches.next()
    loss, n = task.loss(model, (members, flag), CPU, None)
    sents = [task.train_enc[i] for i in members]
    inp = tag_inputs(sents, model.config)
    emissions = model(*inp.model_inputs(CPU))
    want = model.crf.nll(emissions, inp.tags.clamp(min=0), inp.mask).sum() / sum(len(s.words) for s in sents)
    torch.testing.assert_close(loss, want)
    assert n == sum(len(s.words) for s in sents)
    # Without a CRF: mean cross-entropy per token.
    plain = TagTask(data, dataclasses.replace(task.model_config, crf=False), TrainConfig(batch_size=3), 0.0)
    m2 = plain.build_model(CPU).eval()
    loss2, _ = plain.loss(m2, (members, flag), CPU, None)
    e2 = m2(*inp.model_inputs(CPU))
    torch.testing.assert_close(loss2, F.cross_entropy(e2[inp.mask], inp.tags[inp.mask]))
