"""``charrnn train --task tag``, ``predict``, ``eval accuracy`` and ``info`` end to end on a
tiny synthetic language whose tags follow from word endings (nouns end in -a, verbs in -i,
adjectives in -u), so a word never seen in training can still be tagged. The
expectations are computed here from the data, not taken from the product."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from test_cli import assert_one_line_error
from test_cli_seq2seq import HW, cli, no_checkpoint, ok

TINY = ["--hidden-size", "16", "--embedding-dim", "8", "--char-hidden-size", "8", "--char-embedding-dim", "6",
        "--batch-size", "8", "--dropout", "0.1", *HW]
ENDINGS = {"NOUN": "a", "VERB": "i", "ADJ": "u"}
DETS = ["le", "la"]


def _word(rng: random.Random, tag: str) -> str:
    return "".join(rng.choice("bdkmst") + rng.choice("eo") for _ in range(rng.randint(1, 2))) + ENDINGS[tag]


def toy_sentences(n: int, seed: int, vocab: dict[str, list[str]] | None = None) -> list[list[tuple[str, str]]]:
    """Sentences "DET [ADJ] NOUN VERB ." with words drawn from ``vocab`` (or made up)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tags = ["DET", *(["ADJ"] if rng.random() < 0.5 else []), "NOUN", "VERB", "PUNCT"]
        words = []
        for tag in tags:
            if tag == "DET":
                words.append(rng.choice(DETS))
            elif tag == "PUNCT":
                words.append(".")
            else:
                words.append(rng.choice(vocab[tag]) if vocab else _word(rng, tag))
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        out.append(list(zip(words, tags)))
    return out


def write_conllu(path: Path, sentences: list[list[tuple[str, str]]], extras: bool = True) -> Path:
    """CoNLL-U with comments, and (``extras``) a multiword token and an empty node in the first sentence."""
    lines = []
    for k, sent in enumerate(sentences):
        lines.append(f"# sent_id = s{k}")
        lines.append(f"# text = {' '.join(w for w, _ in sent)}")
        for i, (word, tag) in enumerate(sent, start=1):
            if extras and k == 0 and i == 2:
                lines.append(f"2-3\t{word}{sent[2][0]}\t_\t_\t_\t_\t_\t_\t_\t_")
            lines.append(f"{i}\t{word}\t{word.lower()}\t{tag}\tX{tag}\t_\t{max(i - 1, 0)}\tdep\t_\t_")
            if extras and k == 0 and i == 2:
                lines.append("2.1\tghost\tghost\tNOUN\t_\t_\t_\t_\t0:dep\t_")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("tagdata")
    rng = random.Random(5)
    vocab = {tag: sorted({_word(rng, tag) for _ in range(12)}) for tag in ENDINGS}
    train = toy_sentences(160, 1, vocab)
    dev = toy_sentences(30, 2)  # made-up words: most are unseen
    test = toy_sentences(40, 3)
    return (write_conllu(base / "train.conllu", train), write_conllu(base / "dev.conllu", dev),
            write_conllu(base / "test.conllu", test), test, vocab)


@pytest.fixture(scope="module")
def tag_run(data, tmp_path_factory):
    train_file, dev_file, *_ = data
    run = tmp_path_factory.mktemp("tagrun") / "run"
    summary = json.loads(ok("train", "--task", "tag", train_file, "--val-file", dev_file, "--max-steps", "150",
                            "--eval-interval", "50", "--lr", "0.01", "--warmup-steps", "10", *TINY, "-o", run, "--json"))
    return run, summary


def test_tagger_learns_the_toy_language(tag_run):
    _, summary = tag_run
    assert summary["val_accuracy"] >= 0.95
    assert summary["val_unseen_accuracy"] >= 0.9  # the endings give unseen words away
    assert summary["tags"] == ["ADJ", "DET", "NOUN", "PUNCT", "VERB"]


def test_predict_plain_text_one_line_per_sentence(tag_run, data, tmp_path):
    run, _ = tag_run
    *_, test, _ = data
    lines = [" ".join(w for w, _ in s) for s in test[:10]]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]) + "\n", encoding="utf-8")
    out = ok("predict", run, src).split("\n")
    assert out[-1] == "" and len(out) == 12  # 11 lines, the blank one kept blank
    got = out[:5] + out[6:11]
    assert out[5] == ""
    for line, sent in zip(got, test[:10]):
        assert len(line.split()) == len(sent)
    right = sum(p == t for line, sent in zip(got, test[:10]) for p, (_, t) in zip(line.split(), sent))
    assert right / sum(len(s) for s in test[:10]) >= 0.9
    # stdin gives the same.
    assert ok("predict", run, "-", stdin=src.read_bytes()) == "\n".join(out)


def test_predict_conllu_changes_only_the_tag_column(tag_run, data):
    run, _ = tag_run
    _, _, test_file, test, _ = data
    original = test_file.read_text(encoding="utf-8")
    out = ok("predict", run, test_file)
    before, after = original.split("\n"), out.split("\n")
    assert len(before) == len(after)
    plain = ok("predict", run, "-", stdin="".join(" ".join(w for w, _ in s) + "\n" for s in test).encode()).split("\n")
    predicted = iter(t for line in plain for t in line.split())
    for a, b in zip(before, after):
        fa, fb = a.split("\t"), b.split("\t")
        if len(fa) == 10 and fa[0].isdigit():
            assert fa[:3] + fa[4:] == fb[:3] + fb[4:]
            assert fb[3] == next(predicted)
        else:
            assert a == b  # comments, blank lines, the multiword token and the empty node
    assert next(predicted, None) is None
    # The XPOS column on request.
    x = ok("predict", run, test_file, "--tag-column", "XPOS").split("\n")
    for a, b in zip(before, x):
        fa, fb = a.split("\t"), b.split("\t")
        if len(fa) == 10 and fa[0].isdigit():
            assert fa[:4] + fa[5:] == fb[:4] + fb[5:]


def test_predict_json(tag_run):
    run, _ = tag_run
    out = ok("predict", run, "-", "--json", stdin="le bota kemi .\nLa su\n".encode())
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["tokens"] for r in rows] == [["le", "bota", "kemi", "."], ["La", "su"]]
    for r in rows:
        assert len(r["tags"]) == len(r["tokens"]) == len(r["probabilities"])
        assert all(0 < p <= 1 for p in r["probabilities"])
    assert rows[0]["tags"] == ["DET", "NOUN", "VERB", "PUNCT"]


def test_eval_accuracy_against_predictions(tag_run, data):
    run, _ = tag_run
    train_file, _, test_file, test, vocab = data
    rep = json.loads(ok("eval", "accuracy", run, test_file, "--json"))
    plain = ok("predict", run, "-", stdin="".join(" ".join(w for w, _ in s) + "\n" for s in test).encode()).split("\n")
    pairs = [(p, t, w) for line, sent in zip(plain, test) for p, (w, t) in zip(line.split(), sent)]
    seen = {w.lower() for ws in vocab.values() for w in ws} | {d.lower() for d in DETS} | {"."}
    unseen = [(p, t) for p, t, w in pairs if w.lower() not in seen]
    assert rep["tokens"] == len(pairs)
    assert rep["accuracy"] == pytest.approx(sum(p == t for p, t, _ in pairs) / len(pairs))
    assert rep["unseen_tokens"] == len(unseen)
    assert rep["unseen_accuracy"] == pytest.approx(sum(p == t for p, t in unseen) / len(unseen))
    right = [all(p == t for p, (_, t) in zip(line.split(), sent)) for line, sent in zip(plain, test)]
    assert rep["sentence_accuracy"] == pytest.approx(sum(right) / len(test))
    assert rep["spans"] is None  # POS tags are not a chunking scheme
    text = ok("eval", "accuracy", run, test_file)
    assert "unseen-token accuracy" in text and "per tag" in text


def test_info_shows_tags(tag_run):
    run, _ = tag_run
    out = ok("info", run)
    assert "tagger" in out and "ADJ, DET, NOUN, PUNCT, VERB" in out
    summary = json.loads(ok("info", run, "--json"))
    assert summary["task"] == "tag" and summary["task_state"]["tags"] == ["ADJ", "DET", "NOUN", "PUNCT", "VERB"]


def _bio(n: int, seed: int) -> list[list[tuple[str, str]]]:
    """Names (capitalised words, one or two) are PER spans in lower-case text."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        sent = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.3:
                parts = [_word(rng, "NOUN").capitalize() for _ in range(rng.randint(1, 2))]
                sent += [(p, "B-PER" if i == 0 else "I-PER") for i, p in enumerate(parts)]
            else:
                sent.append((_word(rng, "VERB"), "O"))
        out.append(sent)
    return out


def test_crf_tagger_on_bio_tags_reports_spans(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("-DOCSTART-\tO\n\n" + "\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in _bio(150, 1)) + "\n",
                     encoding="utf-8")
    test_sents = _bio(30, 2)
    test = tmp_path / "test.tsv"
    test.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in test_sents) + "\n", encoding="utf-8")
    run = tmp_path / "crf"
    ok("train", "--task", "tag", train, "--crf", "--max-steps", "120", "--lr", "0.01", "--warmup-steps", "10", *TINY,
       "-o", run)
    rep = json.loads(ok("eval", "accuracy", run, test, "--json"))
    assert rep["spans"] is not None and rep["spans"]["gold"] == sum(t == "B-PER" for s in test_sents for _, t in s)
    assert rep["spans"]["f1"] >= 0.8
    text = ok("eval", "accuracy", run, test)
    assert "span F1" in text
    # A token-only CoNLL file (one token per line) gets its tags appended; plain text, tags only.
    tokens = tmp_path / "tokens.conll"
    tokens.write_text("Bota\nkemi\n\n", encoding="utf-8")
    out = ok("predict", run, tokens).split("\n")
    plain = ok("predict", run, "-", stdin=b"Bota kemi\n").split()
    assert [line.split("\t") for line in out[:2]] == [["Bota", plain[0]], ["kemi", plain[1]]]
    assert out[2:] == ["", ""]


# ----------------------------------------------------------------- mistakes


@pytest.mark.parametrize("content, pattern", [
    ("1\tThe\tthe\tDET\t_\t_\t_\t_\t_\t_\n2\tcat\tcat\tNOUN\t_\t_\n\n", "line 2"),
    ("just some words\non lines\n", "line 1"),
    ("# only a comment\n\n", "no tokens"),
    ("", "no sentences"),
])
def test_bad_tagged_files(tmp_path, content, pattern):
    data = tmp_path / "bad.conllu"
    data.write_text(content, encoding="utf-8")
    code, out, err = cli("train", "--task", "tag", data, "--max-steps", "2", *TINY, "-o", tmp_path / "r")
    assert_one_line_error(code, out, err, pattern)
    assert no_checkpoint(tmp_path / "r")


def test_unknown_tag_column(data, tmp_path):
    train_file, *_ = data
    code, out, err = cli("train", "--task", "tag", train_file, "--tag-column", "COLOUR", "--max-steps", "2", *TINY,
                         "-o", tmp_path / "r")
    assert_one_line_error(code, out, err, "COLOUR")
    assert "UPOS" in err and "XPOS" in err


@pytest.mark.parametrize("opts, name", [(["--pool", "mean"], "--pool"), (["--tokenizer", "bpe"], "--tokenizer"),
                                        (["--attention", "dot"], "--attention"), (["--bptt", "16"], "--bptt")])
def test_other_tasks_options_with_tag(data, tmp_path, opts, name):
    train_file, *_ = data
    code, out, err = cli("train", "--task", "tag", train_file, *opts, "--max-steps", "2", *TINY, "-o", tmp_path / "r")
    assert_one_line_error(code, out, err, name)


@pytest.mark.parametrize("opts, name", [(["--crf"], "--crf"), (["--tag-column", "XPOS"], "--tag-column")])
def test_tag_options_with_other_tasks(tmp_path, opts, name):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n" * 50, encoding="utf-8")
    assert_one_line_error(*cli("train", corpus, *opts, "--max-steps", "2", *TINY, "-o", tmp_path / "lm"), name)
    tsv = tmp_path / "c.tsv"
    tsv.write_text("text\tlabel\n" + "a b\tx\nc d\ty\n" * 10, encoding="utf-8")
    assert_one_line_error(*cli("train", "--task", "classify", tsv, *opts, "--max-steps", "2", *TINY, "-o",
                               tmp_path / "c"), name)


def test_wrong_commands_on_a_tagger(tag_run, data):
    run, _ = tag_run
    _, _, test_file, _, _ = data
    assert_one_line_error(*cli("sample", run, "-p", "le"), "tagger")
    assert_one_line_error(*cli("eval", "perplexity", run, test_file), "tagger")
    assert_one_line_error(*cli("predict", run, test_file, "--top-k", "2"), "--top-k")
    assert_one_line_error(*cli("eval", "accuracy", run, test_file, "--beam", "2"), "--beam")
    assert_one_line_error(*cli("eval", "accuracy", run, test_file, "--tag-column", "NOPE"), "NOPE")


def test_resume_is_exact(data, tmp_path):
    from charrnn.checkpoint import load_checkpoint

    train_file, dev_file, *_ = data
    common = ["train", "--task", "tag", train_file, "--val-file", dev_file, "--eval-interval", "10", *TINY]
    first = json.loads(ok(*common, "--max-steps", "15", "-o", tmp_path / "a", "--json"))
    assert first["steps"] == 15
    code, out, err = cli("train", "--task", "tag", train_file, "--val-file", dev_file, "--resume", "--max-steps", "30",
                         "--tag-column", "XPOS", "-o", tmp_path / "a", "--quiet")
    assert_one_line_error(code, out, err, "--tag-column")
    resumed = json.loads(ok("train", "--task", "tag", train_file, "--val-file", dev_file, "--resume", "--max-steps",
                            "30", "--threads", "1", "--quiet", "-o", tmp_path / "a", "--json"))
    assert resumed["resumed_from"] == 15 and resumed["steps"] == 30
    whole = json.loads(ok(*common, "--max-steps", "30", "-o", tmp_path / "b", "--json"))
    for key in ("val_loss", "val_accuracy", "final_val_loss", "final_val_accuracy", "best_step"):
        assert resumed[key] == whole[key], key
    for latest in (True, False):
        a, b = load_checkpoint(tmp_path / "a", latest=latest), load_checkpoint(tmp_path / "b", latest=latest)
        assert a.step == b.step and a.weights.keys() == b.weights.keys()
        for name in a.weights:
            assert torch.equal(a.weights[name], b.weights[name]), (latest, name)


def test_word_vectors_initialise_the_word_embedding(data, tmp_path):
    """--embeddings copies each known word's vector into its row (looked up lower-cased);
    --freeze-embeddings keeps them through training; the others stay as initialised."""
    from charrnn.checkpoint import load_checkpoint

    train_file, *_ = data
    rng = random.Random(0)
    vectors = {w: [round(rng.uniform(-1, 1), 4) for _ in range(8)] for w in ["le", "la", "."]}
    vecs = tmp_path / "vecs.txt"
    vecs.write_text("".join(w + " " + " ".join(map(str, v)) + "\n" for w, v in vectors.items()), encoding="utf-8")
    run = tmp_path / "emb"
    ok("train", "--task", "tag", train_file, "--embeddings", vecs, "--freeze-embeddings", "--max-steps", "5", *TINY,
       "-o", run)
    ck = load_checkpoint(run)
    state = ck.task_state
    assert state["embeddings"]["found"] == 3 and state["freeze_embeddings"] is True
    emb = ck.weights["word_embedding.weight"]
    for word, vec in vectors.items():
        row = state["words"].index(word) + 1  # id 0 is the unknown word
        assert torch.allclose(emb[row], torch.tensor(vec))
    code, out, err = cli("train", "--task", "tag", train_file, "--freeze-embeddings", "--max-steps", "2", *TINY,
                         "-o", tmp_path / "r")
    assert_one_line_error(code, out, err, "--embeddings")
