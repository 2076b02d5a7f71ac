"""Compressed inputs (text/io.py): .gz, .bz2 and .xz (and .zst with the zstandard module)
read as the plain file, streamed in pieces, by every reader and by `charrnn train`."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pytest
import torch

from charrnn.cli import main
from charrnn.errors import CorpusError
from charrnn.text import prepare
from charrnn.text.io import open_binary, plain_name, read_corpus, read_text
from charrnn.text.labelled import read_labelled
from charrnn.text.pairs import read_pairs
from charrnn.text.prepare import prepare_corpus
from charrnn.text.tagged import is_conll, read_tagged
from conftest import TINY_TEXT

try:
    import zstandard
except ImportError:  # optional: .zst is read where it is installed
    zstandard = None

COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}
if zstandard is not None:
    COMPRESS[".zst"] = lambda data: zstandard.ZstdCompressor().compress(data)
SUFFIXES = list(COMPRESS)
# Multi-byte characters everywhere, so pieces are cut inside characters.
TEXT = TINY_TEXT + "é한😀 naïve ünïcödé, 한국어 텍스트 😀😀\n" * 9


def _write(path, text: str = TEXT):
    data = text.encode("utf-8")
    path.write_bytes(COMPRESS[path.suffix](data) if path.suffix in COMPRESS else data)
    return path


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_compressed_file_reads_as_the_plain_file(tmp_path, suffix):
    path = _write(tmp_path / f"corpus.txt{suffix}")
    assert read_text(path) == TEXT
    assert read_corpus([str(path), str(_write(tmp_path / "b.txt"))]) == TEXT + TEXT
    with open_binary(path) as f:  # in pieces, by lines, and seeking as the corpus preparation does
        assert f.read(7) + f.read() == TEXT.encode()
        f.seek(100)
        assert f.read(20) == TEXT.encode()[100:120]
        f.seek(3)
        assert f.readline() == TEXT.encode()[3:].split(b"\n")[0] + b"\n"
    with open_binary(path) as f:
        assert b"".join(f) == TEXT.encode()
    assert plain_name(path).name == "corpus.txt" and plain_name(tmp_path / "a.tsv").name == "a.tsv"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_prepared_ids_are_those_of_the_plain_file_and_share_its_cache(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(prepare, "CHUNK_BYTES", 64)  # many pieces, and the split chunk is read again by seeking
    plain = _write(tmp_path / "corpus.txt")
    packed = _write(tmp_path / f"corpus.txt{suffix}")
    a = prepare_corpus([str(plain)], cache_dir=tmp_path / "a")
    seen = {}
    b = prepare_corpus([str(packed)], cache_dir=tmp_path / "b",
                       on_progress=lambda phase, done, total: seen.setdefault(phase, []).append((done, total)))
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert a.tokenizer.state()[0] == b.tokenizer.state()[0] and a.fingerprint == b.fingerprint
    assert a.val_text_chars == b.val_text_chars
    # Progress counts bytes on disk: it grows and ends at the compressed file's size.
    reading = seen["reading"]
    assert [d for d, _ in reading] == sorted(d for d, _ in reading)
    assert reading[-1] == (packed.stat().st_size, packed.stat().st_size)
    # The cache is keyed by the text, not by the file: the compressed copy finds the plain file's ids.
    assert prepare_corpus([str(packed)], cache_dir=tmp_path / "a").cached


def test_several_files_mixed_keep_their_boundaries(tmp_path):
    files = [str(_write(tmp_path / "a.txt.gz", "ab\n")), str(_write(tmp_path / "b.txt", "c" * 40))]
    ref = prepare_corpus([str(_write(tmp_path / "a.txt", "ab\n")), files[1]], cache_dir=tmp_path / "c")
    got = prepare_corpus(files, cache_dir=tmp_path / "c")
    assert got.cached and torch.equal(got.train, ref.train)
    # Other boundaries, same bytes: another key.
    moved = [str(_write(tmp_path / "d.txt.xz", "ab\nc")), str(_write(tmp_path / "e.txt", "c" * 39))]
    assert not prepare_corpus(moved, cache_dir=tmp_path / "c").cached


def test_the_readers_of_labelled_paired_and_tagged_files(tmp_path):
    tsv = _write(tmp_path / "train.tsv.gz", "sentence\tlabel\na good film\tpos\na bad film\tneg\n")
    assert [(e.text, e.label) for e in read_labelled(tsv)] == [("a good film", "pos"), ("a bad film", "neg")]
    folder = tmp_path / "names"
    folder.mkdir()
    _write(folder / "Arabic.txt.bz2", "Nader\nAbadi\n")
    _write(folder / "Korean.txt", "Ahn\n")
    assert sorted({e.label for e in read_labelled(folder)}) == ["Arabic", "Korean"]
    pairs = _write(tmp_path / "g2p.tsv.xz", "abc\ta b c\n")
    assert [(p.source, p.target) for p in read_pairs(pairs)] == [("abc", "a b c")]
    conllu = _write(tmp_path / "train.conllu.gz", "1\tEU\t_\tPROPN\t_\t_\t_\t_\t_\t_\n\n")
    assert is_conll("", str(conllu))
    assert [s.tags for s in read_tagged(conllu)] == [["PROPN"]]


@pytest.mark.parametrize("suffix, data, message", [
    (".gz", gzip.compress(TEXT.encode())[:-30], "is cut short"),
    (".gz", b"plain text, not gzip\n", "is not valid gzip data"),
    (".bz2", bz2.compress(TEXT.encode())[:-10], "is cut short"),
    (".xz", b"\x00\x01 not xz", "is not valid xz data"),
])
def test_a_damaged_compressed_file_is_one_error_naming_it(tmp_path, suffix, data, message):
    path = tmp_path / f"corpus.txt{suffix}"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match=f"^{path}: {message}"):
        read_text(path)
    with pytest.raises(CorpusError, match=f"^{path}: {message}"):
        prepare_corpus([str(path)], cache_dir=tmp_path / "c")


@pytest.mark.parametrize("suffix, tool", [(".gz", "gunzip"), (".bz2", "bunzip2"), (".xz", "unxz")])
def test_compressed_bytes_under_a_plain_name_are_named(tmp_path, suffix, tool):
    path = tmp_path / "corpus.txt"
    path.write_bytes(COMPRESS[suffix](TEXT.encode()))
    with pytest.raises(CorpusError, match=f"name it \\*{suffix} to read it as it is, or decompress it \\({tool}\\)"):
        read_text(path)


def test_zst_without_the_zstandard_module_says_what_to_install(tmp_path, monkeypatch):
    from charrnn.text import io as text_io

    monkeypatch.setattr(text_io, "_zstd_module", lambda: None)
    path = tmp_path / "corpus.txt.zst"
    path.write_bytes(b"(\xb5/\xfd")
    with pytest.raises(CorpusError, match="needs the zstandard module \\(pip install zstandard\\)"):
        read_text(path)


def _train(capsys, corpus, out):
    try:
        main(["train", str(corpus), "--out", str(out), "--max-steps", "4", "--log-interval", "1", "--eval-interval",
              "4", "--layers", "1", "--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "4", "--bptt", "8",
              "--device", "cpu", "--precision", "fp32", "--threads", "1", "--quiet", "--json"])
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    losses = [r["train_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r.get("event") == "train"]
    return summary, losses


def test_training_on_a_compressed_copy_takes_the_same_first_steps(tmp_path, capsys):
    _, ref = _train(capsys, _write(tmp_path / "tiny.txt"), tmp_path / "plain")
    assert len(ref) == 4
    for suffix in (".gz", ".bz2", ".xz"):
        summary, losses = _train(capsys, _write(tmp_path / f"tiny.txt{suffix}"), tmp_path / suffix[1:])
        assert losses == ref, suffix


def test_the_default_run_directory_drops_the_compression_suffix():
    from charrnn.training.run import default_out

    assert default_out(None, ["data/corpus.txt.gz"]) == Path("checkpoints") / "corpus"
    assert default_out(None, ["data/corpus.txt"]) == Path("checkpoints") / "corpus"
    assert default_out(None, ["-"]) == Path("checkpoints") / "stdin"
