"""Streaming corpus preparation and the id cache, against the in-memory reference path."""

import io

import pytest
import torch

from charrnn.text import prepare
from charrnn.text.io import read_corpus
from charrnn.text.streams import split_text
from charrnn.errors import CorpusError, InvalidUtf8Error
from charrnn.text.prepare import Corpus, prepare_corpus
from charrnn.text.tokenizers import train_tokenizer
from conftest import TINY_TEXT

TRICKY = ("한국어 텍스트와 emoji 🙂🚀 mixed\twith tabs\nand lines,\r\nÅngström café; ascii only line\n" * 7)


def reference(paths, val_fraction=0.1, tokenizer=None):
    train, val = split_text(read_corpus([str(p) for p in paths]), val_fraction)
    tok = tokenizer(train) if callable(tokenizer) else tokenizer
    return Corpus.from_texts(train, val, tok)


@pytest.fixture
def files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TRICKY[:301], encoding="utf-8")
    b.write_text(TRICKY[301:] + TINY_TEXT, encoding="utf-8")
    return [a, b]


@pytest.mark.parametrize("chunk", [1, 5, 7, 64, 1 << 20])
def test_streamed_char_ids_equal_the_in_memory_reference(files, tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(prepare, "CHUNK_BYTES", chunk)  # chunks cut multi-byte characters everywhere
    ref = reference(files)
    got = prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "cache")
    assert got.tokenizer.chars == ref.tokenizer.chars
    assert torch.equal(got.train, ref.train) and torch.equal(got.val, ref.val)
    assert got.train.dtype == torch.int16
    assert got.fingerprint == ref.fingerprint
    assert not got.cached


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_streamed_subword_ids_equal_the_in_memory_reference(files, tmp_path, monkeypatch, kind):
    monkeypatch.setattr(prepare, "CHUNK_BYTES", 40)
    make = lambda text: train_tokenizer(kind, text, 320)  # noqa: E731
    ref = reference(files, tokenizer=make)
    got = prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "cache", tokenizer=make)
    assert torch.equal(got.train, ref.train) and torch.equal(got.val, ref.val)
    assert got.fingerprint == ref.fingerprint


def test_second_preparation_uses_the_memory_mapped_cache(files, tmp_path):
    first = prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "cache")
    second = prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "cache")
    assert second.cached and torch.equal(first.train, second.train) and first.fingerprint == second.fingerprint
    entries = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert entries == [".ids", ".json"]
    # A changed corpus, split or tokenizer is another entry.
    prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "cache", val_fraction=0.2)
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_a_damaged_cache_entry_is_rebuilt(files, tmp_path):
    first = prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "cache")
    ids_file = next((tmp_path / "cache").glob("*.ids"))
    ids_file.write_bytes(ids_file.read_bytes()[:-2])  # truncated
    again = prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "cache")
    assert not again.cached and torch.equal(first.train, again.train)


def test_errors_name_the_file_and_the_absolute_byte_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "CHUNK_BYTES", 16)
    bad = tmp_path / "bad.txt"
    bad.write_bytes("é".encode() * 40 + b"\xff" + b"tail" * 10)
    with pytest.raises(InvalidUtf8Error) as e:
        prepare_corpus([str(bad)], cache_dir=tmp_path / "c")
    assert e.value.offset == 80 and e.value.byte == 0xFF
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"x" * 50 + b"\x00" + b"y" * 50)
    with pytest.raises(CorpusError, match="NUL byte at offset 50"):
        prepare_corpus([str(nul)], cache_dir=tmp_path / "c")
    # --replace-invalid: the same as decoding with errors="replace" in memory.
    got = prepare_corpus([str(bad)], cache_dir=tmp_path / "c", replace_errors=True)
    text = bad.read_bytes().decode("utf-8", errors="replace")
    ref = Corpus.from_texts(*split_text(text, 0.1))
    assert torch.equal(got.train, ref.train) and torch.equal(got.val, ref.val)


def test_empty_missing_and_tiny_corpora(tmp_path):
    empty = tmp_path / "e.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty"):
        prepare_corpus([str(empty)], cache_dir=tmp_path / "c")
    with pytest.raises(CorpusError, match="no such file"):
        prepare_corpus([str(tmp_path / "nope.txt")], cache_dir=tmp_path / "c")
    one = tmp_path / "one.txt"
    one.write_text("abc")
    with pytest.raises(CorpusError, match="too few"):
        prepare_corpus([str(one)], cache_dir=tmp_path / "c")


def test_separate_validation_file_and_stdin(files, tmp_path):
    val = tmp_path / "val.txt"
    val.write_text("the cat sat.\n")
    got = prepare_corpus([str(f) for f in files], val_source=str(val), cache_dir=tmp_path / "c")
    text = read_corpus([str(f) for f in files])
    ref = Corpus.from_texts(text, "the cat sat.\n")
    assert torch.equal(got.train, ref.train) and torch.equal(got.val, ref.val) and got.fingerprint == ref.fingerprint
    piped = prepare_corpus(["-"], stdin=io.BytesIO(text.encode()), cache_dir=tmp_path / "c")
    assert torch.equal(piped.train, reference(files).train)


def test_progress_is_reported_for_both_passes(files, tmp_path):
    seen = {}
    prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "c",
                   on_progress=lambda phase, done, total: seen.__setitem__(phase, (done, total)))
    assert seen["reading"][0] == seen["reading"][1] == sum(f.stat().st_size for f in files)
    assert seen["tokenizing"][0] == seen["tokenizing"][1]


def test_validation_text_is_capped(files, tmp_path):
    got = prepare_corpus([str(f) for f in files], cache_dir=tmp_path / "c", val_fraction=0.5, val_max_chars=50)
    text = read_corpus([str(f) for f in files])
    ref = Corpus.from_texts(text[:-50], text[-50:])
    assert got.val.numel() == 50 and torch.equal(got.train, ref.train) and torch.equal(got.val, ref.val)
