"""--init RUN (training/transfer.py): a task's model starts from a language model's
weights: exactly the tensors its task names, whole or in their leading block; the rest as
usual; mismatches refused in one line."""

from __future__ import annotations

import pytest
import torch

import charrnn
from charrnn.checkpoint import load_checkpoint
from charrnn.errors import ConfigError
from charrnn.training.transfer import copy_from

HW = dict(threads=1, device="cpu", precision="fp32", progress=False)
LM = dict(hidden_size=6, embedding_dim=5, layers=2, batch_size=4, bptt=8, max_steps=4, eval_interval=4, **HW)
# One step with a vanishing learning rate: the saved model is the model as built and copied.
STILL = dict(max_steps=1, lr=1e-12, weight_decay=0.0, warmup_steps=0, batch_size=4, eval_interval=1, **HW)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    from conftest import TINY_TEXT

    where = tmp_path_factory.mktemp("lm")
    (where / "c.txt").write_text(TINY_TEXT, encoding="utf-8")
    (where / "labelled.tsv").write_text(
        "text\tlabel\n" + "".join(f"{line}\t{'a' if i % 2 else 'b'}\n" for i, line in enumerate(TINY_TEXT.splitlines())
                                  if line.strip()), encoding="utf-8")
    charrnn.train(where / "c.txt", out=where / "lm", **LM)
    return where


def test_a_classifier_takes_the_embedding_and_the_forward_layers(lm_run, tmp_path):
    events = []
    charrnn.train(lm_run / "labelled.tsv", task="classify", init=lm_run / "lm", out=tmp_path / "clf",
                  on_event=events.append, **STILL)
    lm, clf = load_checkpoint(lm_run / "lm"), load_checkpoint(tmp_path / "clf")
    assert clf.model_config.hidden_size == 6 and clf.model_config.layers == 2 and clf.model_config.embedding_dim == 5
    assert clf.tokenizer.state()[0] == lm.tokenizer.state()[0]  # the LM's tokenizer
    w, c = lm.weights, clf.weights
    close = dict(rtol=0, atol=1e-6)
    torch.testing.assert_close(c["embedding.weight"], w["embedding.weight"], **close)
    for k in (0, 1):
        for part in ("weight_hh", "bias_ih", "bias_hh"):
            torch.testing.assert_close(c[f"layers.{k}.0.{part}_l0"], w[f"rnn.{part}_l{k}"], **close)
    torch.testing.assert_close(c["layers.0.0.weight_ih_l0"], w["rnn.weight_ih_l0"], **close)
    # Layer 2 reads both directions (12 inputs): the LM's 6 columns are the forward ones.
    torch.testing.assert_close(c["layers.1.0.weight_ih_l0"][:, :6], w["rnn.weight_ih_l1"], **close)
    # The backward direction and the head are the classifier's own.
    assert not torch.allclose(c["layers.0.1.weight_hh_l0"], w["rnn.weight_hh_l0"])
    start = [e for e in events if e.kind == "start"][0].data["init"]
    assert start["whole"] == 8 and start["part"] == 1  # embedding, layer 1 x 4, layer 2 x 3 whole; its input in part


def test_a_conditioned_generator_takes_the_leading_blocks(lm_run, tmp_path):
    charrnn.train(lm_run / "labelled.tsv", task="conditional", init=lm_run / "lm", out=tmp_path / "gen",
                  label_dim=3, **STILL)
    w, g = load_checkpoint(lm_run / "lm").weights, load_checkpoint(tmp_path / "gen").weights
    v, e = w["embedding.weight"].shape
    close = dict(rtol=0, atol=1e-6)
    torch.testing.assert_close(g["embedding.weight"][:v], w["embedding.weight"], **close)  # + padding, SOS, EOS
    torch.testing.assert_close(g["rnn.weight_ih_l0"][:, :e], w["rnn.weight_ih_l0"], **close)  # + the label's columns
    torch.testing.assert_close(g["decoder.weight"][:v], w["decoder.weight"], **close)
    torch.testing.assert_close(g["rnn.weight_hh_l1"], w["rnn.weight_hh_l1"], **close)


def test_a_tagger_takes_the_forward_layers_and_the_rows_of_its_words(lm_run, tmp_path):
    """A tagger keeps its own vocabulary (lower-cased training words) and character
    tokenizer: a word that is a whole token of the language model's vocabulary starts from
    that token's embedding row; the others, and the character encoder, as usual."""
    from conftest import TINY_TEXT

    charrnn.train(lm_run / "c.txt", out=tmp_path / "wlm", tokenizer="word", vocab_size=270,
                  **{**LM, "embedding_dim": 4, "bptt": 4})
    words = ["zqxv", "plorbik", "vvqz"] + [w for line in TINY_TEXT.splitlines() for w in line.split()][:200]
    (tmp_path / "t.tsv").write_text("".join(f"{w}\t{'N' if len(w) > 3 else 'X'}\n" + ("\n" if i % 8 == 7 else "")
                                            for i, w in enumerate(words)), encoding="utf-8")
    events = []
    charrnn.train(tmp_path / "t.tsv", task="tag", init=tmp_path / "wlm", out=tmp_path / "tag", char_hidden_size=3,
                  on_event=events.append, **{**STILL, "batch_size": 2})
    lm, tag = load_checkpoint(tmp_path / "wlm"), load_checkpoint(tmp_path / "tag")
    w, t = lm.weights, tag.weights
    close = dict(rtol=0, atol=1e-6)
    m = tag.model_config
    assert (m.hidden_size, m.layers, m.embedding_dim) == (6, 2, 4)
    # Layer 1 reads the word embedding (4) then the character features (2 x 3): the LM's
    # columns are the first 4.
    torch.testing.assert_close(t["layers.0.0.weight_ih_l0"][:, :4], w["rnn.weight_ih_l0"], **close)
    torch.testing.assert_close(t["layers.0.0.weight_hh_l0"], w["rnn.weight_hh_l0"], **close)
    torch.testing.assert_close(t["layers.1.0.weight_ih_l0"][:, :6], w["rnn.weight_ih_l1"], **close)
    # By hand: the LM's pieces as lower-cased words -> their first id; the tagger's words.
    pieces = {}
    for i in range(lm.tokenizer.vocab_size):
        text = lm.tokenizer.piece(i).replace("\u2581", " ").strip().lower()
        if text and i != lm.tokenizer.unk_id:
            pieces.setdefault(text, i)
    vocab = tag.task_state["words"]
    matched = [(row + 1, pieces[word]) for row, word in enumerate(vocab) if word in pieces]
    assert len(matched) >= 5
    for mine, theirs in matched:
        torch.testing.assert_close(t["word_embedding.weight"][mine], w["embedding.weight"][theirs], **close)
    # The other words' rows (and the character encoder) are those of the same tagger
    # trained without --init.
    charrnn.train(tmp_path / "t.tsv", task="tag", out=tmp_path / "own", char_hidden_size=3, hidden_size=6, layers=2,
                  embedding_dim=4, **{**STILL, "batch_size": 2})
    own = load_checkpoint(tmp_path / "own").weights
    unmatched = [row + 1 for row, word in enumerate(vocab) if word not in pieces]
    assert len(unmatched) >= 3
    for r in unmatched:
        torch.testing.assert_close(t["word_embedding.weight"][r], own["word_embedding.weight"][r], **close)
    torch.testing.assert_close(t["char_layers.0.0.weight_ih_l0"], own["char_layers.0.0.weight_ih_l0"], **close)
    assert not torch.allclose(t["layers.0.0.weight_hh_l0"], own["layers.0.0.weight_hh_l0"])
    rows = [e for e in events if e.kind == "start"][0].data["init"]["rows"]
    assert rows == {"found": len(matched), "vocab": len(vocab)}


def test_mismatches_are_one_line(lm_run, tmp_path):
    with pytest.raises(ConfigError, match="drop --hidden-size or make it 6"):
        charrnn.train(lm_run / "labelled.tsv", task="classify", init=lm_run / "lm", hidden_size=8,
                      out=tmp_path / "a", **STILL)
    with pytest.raises(ConfigError, match="tokenizer"):
        charrnn.train(lm_run / "labelled.tsv", task="classify", init=lm_run / "lm", tokenizer="word",
                      out=tmp_path / "b", **STILL)
    pairs = _pairs(lm_run)
    with pytest.raises(ConfigError, match="drop --source-tokenizer"):
        charrnn.train(pairs, task="seq2seq", init=lm_run / "lm", source_tokenizer="word", out=tmp_path / "c", **STILL)
    with pytest.raises(ConfigError, match="not --target-tokenizer space"):
        charrnn.train(pairs, task="seq2seq", init=lm_run / "lm", shared_vocab=True, target_tokenizer="space",
                      out=tmp_path / "c", **STILL)
    greek = tmp_path / "greek.tsv"
    greek.write_text("".join(f"{w}\t{'αβγδ'[len(w) % 4] * 2}\n" for w in ("cat", "dog", "mat", "log", "sat")))
    with pytest.raises(ConfigError, match="knows none of the training target tokens.*drop --shared-vocab"):
        charrnn.train(greek, task="seq2seq", init=lm_run / "lm", shared_vocab=True, out=tmp_path / "c", **STILL)
    charrnn.train(lm_run / "labelled.tsv", task="classify", out=tmp_path / "clf", **STILL)
    with pytest.raises(ConfigError, match="takes a language model"):
        charrnn.train(lm_run / "labelled.tsv", task="classify", init=tmp_path / "clf", out=tmp_path / "d", **STILL)


def _pairs(where):
    """word<TAB>its letters backwards, space-separated: one pair per distinct word."""
    from conftest import TINY_TEXT

    path = where / "pairs.tsv"
    words = sorted({w.strip(".") for w in TINY_TEXT.split()})
    path.write_text("".join(f"{w}\t{' '.join(reversed(w))}\n" for w in words), encoding="utf-8")
    return path


def test_an_encoder_decoder_takes_the_encoder(lm_run, tmp_path):
    """seq2seq: the source side takes the LM's tokenizer; the source embedding's leading
    rows (padding is the last row) and each encoder layer's forward direction are the LM's;
    the target side (its own vocabulary) and the decoder are the task's own."""
    events = []
    charrnn.train(_pairs(lm_run), task="seq2seq", init=lm_run / "lm", out=tmp_path / "s2s", target_tokenizer="space",
                  on_event=events.append, **STILL)
    lm, s2s = load_checkpoint(lm_run / "lm"), load_checkpoint(tmp_path / "s2s")
    w, s = lm.weights, s2s.weights
    assert s2s.tokenizer.source.state()[0] == lm.tokenizer.state()[0]
    assert s2s.tokenizer.target.kind == "space"
    v = w["embedding.weight"].shape[0]
    close = dict(rtol=0, atol=1e-6)
    assert s["src_embedding.weight"].shape[0] == v + 1
    torch.testing.assert_close(s["src_embedding.weight"][:v], w["embedding.weight"], **close)
    for k in (0, 1):
        for part in ("weight_hh", "bias_ih", "bias_hh"):
            torch.testing.assert_close(s[f"encoder.{k}.0.{part}_l0"], w[f"rnn.{part}_l{k}"], **close)
    torch.testing.assert_close(s["encoder.0.0.weight_ih_l0"], w["rnn.weight_ih_l0"], **close)
    torch.testing.assert_close(s["encoder.1.0.weight_ih_l0"][:, :6], w["rnn.weight_ih_l1"], **close)
    assert not torch.allclose(s["encoder.0.1.weight_hh_l0"], w["rnn.weight_hh_l0"])  # the backward direction
    assert not torch.allclose(s["decoder.weight_hh_l0"], w["rnn.weight_hh_l0"])
    start = [e for e in events if e.kind == "start"][0].data["init"]
    assert (start["whole"], start["part"]) == (7, 2)  # layer 1 x 4, layer 2 x 3; the embedding and layer 2's input


def test_an_encoder_decoder_with_one_vocabulary_takes_the_decoder_too(lm_run, tmp_path):
    """--shared-vocab: both sides are the LM's tokenizer, so the decoder takes the LM too:
    the target embedding's and the generator's leading rows (then padding, SOS, EOS), each
    decoder layer (the first in its leading columns: input feeding's come after)."""
    notes = []
    charrnn.train(_pairs(lm_run), task="seq2seq", init=lm_run / "lm", out=tmp_path / "s2s", shared_vocab=True,
                  on_note=notes.append, **STILL)
    lm, s2s = load_checkpoint(lm_run / "lm"), load_checkpoint(tmp_path / "s2s")
    w, s = lm.weights, s2s.weights
    assert s2s.tokenizer.shared and s2s.tokenizer.source.state()[0] == lm.tokenizer.state()[0]
    v, e = w["embedding.weight"].shape
    close = dict(rtol=0, atol=1e-6)
    assert s["tgt_embedding.weight"].shape[0] == v + 3 and s["generator.weight"].shape[0] == v + 3
    torch.testing.assert_close(s["src_embedding.weight"][:v], w["embedding.weight"], **close)
    torch.testing.assert_close(s["tgt_embedding.weight"][:v], w["embedding.weight"], **close)
    torch.testing.assert_close(s["generator.weight"][:v], w["decoder.weight"], **close)
    torch.testing.assert_close(s["generator.bias"][:v], w["decoder.bias"], **close)
    torch.testing.assert_close(s["decoder.weight_ih_l0"][:, :e], w["rnn.weight_ih_l0"], **close)
    assert s["decoder.weight_ih_l0"].shape[1] == e + 6  # input feeding: the task's own columns
    for name in ("weight_hh_l0", "bias_ih_l0", "weight_ih_l1", "weight_hh_l1", "bias_hh_l1"):
        torch.testing.assert_close(s[f"decoder.{name}"], w[f"rnn.{name}"], **close)
    torch.testing.assert_close(s["encoder.1.0.weight_hh_l0"], w["rnn.weight_hh_l1"], **close)
    assert not any("unknown" in n for n in notes)  # the words' letters are all in the LM's text


def test_a_tensor_that_does_not_fit_is_refused(lm_run):
    lm = load_checkpoint(lm_run / "lm")
    small = torch.nn.Module()
    small.embedding = torch.nn.Embedding(2, 5)  # fewer rows than the LM's vocabulary
    with pytest.raises(ConfigError, match="does not fit"):
        copy_from(small, lm, lambda n: n if n == "embedding.weight" else None)


def test_layer_learning_rates_and_unfreezing_step_by_step(lm_run, tmp_path, monkeypatch):
    """--layer-lr-decay 2 --unfreeze 2 on a classifier started from a 2-layer LM: depths are
    the embedding 0, the LM's layers 1 and 2, the classifier's own (head, backward
    direction) 3; at step s a group at depth d trains at lr / 2 ** (3 - d) once
    s >= (3 - d) * 2, before that at 0 (its weights do not move)."""
    from charrnn.training import loop

    seen = []
    real = loop.Trainer.train_step

    def spy(self):
        seen.append((self.step, self.lr, sorted({(g["depth"], g["lr"]) for g in self.opt.param_groups})))
        return real(self)

    monkeypatch.setattr(loop.Trainer, "train_step", spy)
    opts = {**STILL, "lr": 1e-2, "max_steps": 7, "eval_interval": 100}
    charrnn.train(lm_run / "labelled.tsv", task="classify", init=lm_run / "lm", out=tmp_path / "clf",
                  layer_lr_decay=2.0, unfreeze=2, **opts)
    assert [s for s, _, _ in seen] == list(range(7))
    for step, lr, groups in seen:
        want = [(d, 0.0 if step < (3 - d) * 2 else lr / 2 ** (3 - d)) for d in (0, 1, 2, 3)]
        assert [d for d, _ in groups] == [0, 1, 2, 3]
        for (d, got), (_, expected) in zip(groups, want):
            assert got == pytest.approx(expected, rel=1e-12), (step, d)
    # The embedding (depth 0) first trains at step 6: after 7 steps it moved, but only once.
    lm, clf = load_checkpoint(lm_run / "lm", latest=True), load_checkpoint(tmp_path / "clf", latest=True)
    assert not torch.equal(clf.weights["embedding.weight"], lm.weights["embedding.weight"])


def test_the_fine_tuning_options_need_init(lm_run, tmp_path):
    with pytest.raises(ConfigError, match="need --init"):
        charrnn.train(lm_run / "labelled.tsv", task="classify", unfreeze=2, out=tmp_path / "x", **STILL)


def test_a_frozen_layer_does_not_move(lm_run, tmp_path):
    """Four steps (0-3) with --unfreeze 2: the embedding (depth 0, unfrozen at step 6) and
    the LM's first layer (depth 1, at step 4) are still the language model's, bit for bit;
    its second layer (depth 2, from step 2) and the classifier's head have trained."""
    charrnn.train(lm_run / "labelled.tsv", task="classify", init=lm_run / "lm", out=tmp_path / "clf", unfreeze=2,
                  **{**STILL, "lr": 1e-2, "max_steps": 4, "eval_interval": 100})
    lm, clf = load_checkpoint(lm_run / "lm"), load_checkpoint(tmp_path / "clf", latest=True)
    assert torch.equal(clf.weights["embedding.weight"], lm.weights["embedding.weight"])
    assert torch.equal(clf.weights["layers.0.0.weight_hh_l0"], lm.weights["rnn.weight_hh_l0"])
    assert not torch.equal(clf.weights["layers.1.0.weight_hh_l0"], lm.weights["rnn.weight_hh_l1"])
    fresh = tmp_path / "fresh"
    charrnn.train(lm_run / "labelled.tsv", task="classify", init=lm_run / "lm", out=fresh,
                  **{**STILL, "max_steps": 1, "eval_interval": 100})
    assert not torch.equal(clf.weights["head.weight"], load_checkpoint(fresh).weights["head.weight"])
