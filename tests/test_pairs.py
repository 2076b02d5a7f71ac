"""Pair files (source<TAB>target), prediction input, references, and resumable pair batches."""

import gzip
import io
import itertools
import random

import pytest
import torch

from charrnn.errors import CorpusError
from charrnn.text.batching import BUCKET_BATCHES
from charrnn.text.pairs import (
    Pair,
    PairBatches,
    group_references,
    read_pairs,
    read_sources,
)


def _write(tmp_path, data, name="pairs.tsv"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------- reading


def test_read_a_good_file(tmp_path):
    data = "\ufeffабажура\ta b ə ʒ u ɾ ə\r\n\r\n  чак \t t͡ʃ a̠ k  \r\n\n  \nабата\tə b a t̪ ə"
    path = _write(tmp_path, data)
    assert read_pairs(path) == [
        Pair("абажура", "a b ə ʒ u ɾ ə", 1),
        Pair("чак", "t͡ʃ a̠ k", 3),
        Pair("абата", "ə b a t̪ ə", 6),
    ]


def test_read_a_shared_corpus_file():
    from conftest import SHARED_CORPORA

    path = SHARED_CORPORA / "g2p-sigmorphon2021" / "medium" / "bul_dev.tsv"
    if not path.exists():
        pytest.skip("shared corpora not available")
    pairs = read_pairs(path)
    assert len(pairs) == sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())
    assert all(p.source and p.target and "\t" not in p.source + p.target for p in pairs)


@pytest.mark.parametrize("data, line, message", [
    ("a\tb\nno tab here\n", 2, "no tab between source and target"),
    ("a\tb\n\na\tb\tc\n", 3, "3 tab-separated columns, expected 2 (source<TAB>target)"),
    ("a\tb\n \t x\n", 2, "empty source"),
    ("a\tb\nc\t  \r\n", 2, "empty target"),
    ("a\tb\nc\t\n", 2, "empty target"),
])
def test_each_error_names_its_line(tmp_path, data, line, message):
    path = _write(tmp_path, data)
    with pytest.raises(CorpusError) as e:
        read_pairs(path)
    assert str(e.value) == f"{path}:{line}: {message}"


@pytest.mark.parametrize("data", ["", "\ufeff", "\n \n\r\n"])
def test_a_file_without_pairs_is_an_error(tmp_path, data):
    path = _write(tmp_path, data)
    with pytest.raises(CorpusError, match="no source<TAB>target pairs"):
        read_pairs(path)


def test_unreadable_files_are_clear_errors(tmp_path):
    gz = _write(tmp_path, gzip.compress(b"a\tb\n"), "pairs.tsv")  # compressed under a plain name
    with pytest.raises(CorpusError, match="gzip"):
        read_pairs(gz)
    binary = _write(tmp_path, b"a\tb\n\x00\x01\x02", "pairs.bin")
    with pytest.raises(CorpusError, match="binary"):
        read_pairs(binary)
    latin1 = _write(tmp_path, "café\tk a f e\n".encode("latin-1"), "latin1.tsv")
    with pytest.raises(CorpusError, match="invalid UTF-8 at byte offset 3"):
        read_pairs(latin1)
    with pytest.raises(CorpusError, match="no such file"):
        read_pairs(tmp_path / "missing.tsv")
    with pytest.raises(CorpusError, match="is a directory"):
        read_pairs(tmp_path)


def test_group_references_keeps_first_seen_order():
    pairs = [Pair("b", "1", 1), Pair("a", "2", 2), Pair("b", "3", 3), Pair("c", "4", 4), Pair("a", "2", 5)]
    sources, refs = group_references(pairs)
    assert sources == ["b", "a", "c"]
    assert refs == [["1", "3"], ["2", "2"], ["4"]]


def test_read_sources_from_a_plain_file_and_a_pair_file(tmp_path):
    plain = _write(tmp_path, "\ufeffабажура\r\n\nчак  \n", "words.txt")
    assert list(read_sources(plain)) == ["абажура", "", "чак"]
    pairs = _write(tmp_path, "абажура\ta b ə\r\nчак\tt͡ʃ a̠ k\textra\n")
    assert list(read_sources(pairs)) == ["абажура", "чак"]


def test_read_sources_from_stdin_is_lazy():
    class Lines(io.BytesIO):
        """A stream that fails if read past the first line before it is asked for."""

        def __init__(self):
            super().__init__(b"one\ttwo\nthree\n")
            self.served = 0

        def __next__(self):
            self.served += 1
            return super().__next__()

    stream = Lines()
    sources = read_sources("-", stdin=stream)
    assert next(sources) == "one" and stream.served == 1
    assert list(sources) == ["three"]


def test_read_sources_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_sources(tmp_path / "missing.txt")  # at the call, not at the first line
    bad = _write(tmp_path, b"ok\n\xff\n", "bad.txt")
    with pytest.raises(CorpusError, match="offset 3"):
        list(read_sources(bad))
    assert list(read_sources(bad, replace_errors=True)) == ["ok", "\ufffd"]


# ------------------------------------------------------------------------- batching


def _random_pairs(n, seed=0, longest=30):
    rng = random.Random(seed)
    src = [[rng.randrange(1, 50) for _ in range(rng.randint(1, longest))] for _ in range(n)]
    tgt = [[rng.randrange(1, 40) for _ in range(rng.randint(1, longest))] for _ in range(n)]
    return src, tgt


def _rows(tensor, lengths):
    return [tuple(row[:n].tolist()) for row, n in zip(tensor, lengths.tolist())]


def test_every_pair_exactly_once_per_epoch():
    src, tgt = _random_pairs(103)
    batches = PairBatches(src, tgt, batch_size=8, seed=1, src_pad=0, tgt_pad=0)
    assert batches.windows_per_epoch == 13
    for epoch in range(2):
        members = sorted(i for b in batches.plan(epoch) for i in b)
        assert members == list(range(103))
        seen = []
        for index in range(batches.windows_per_epoch):
            s, s_len, t, t_len = batches.batch(epoch, index)
            seen += list(zip(_rows(s, s_len), _rows(t, t_len)))
        assert sorted(seen) == sorted(zip(map(tuple, src), map(tuple, tgt)))


def test_plan_depends_on_seed_and_epoch_only():
    src, tgt = _random_pairs(60)
    a = PairBatches(src, tgt, batch_size=4, seed=7, src_pad=0, tgt_pad=0)
    b = PairBatches(src, tgt, batch_size=4, seed=7, src_pad=0, tgt_pad=0)
    assert a.plan(3) == b.plan(3)
    assert a.plan(0) != a.plan(1)
    assert PairBatches(src, tgt, batch_size=4, seed=8, src_pad=0, tgt_pad=0).plan(0) != b.plan(0)


def test_resume_gives_the_same_next_batches():
    src, tgt = _random_pairs(30)
    run = PairBatches(src, tgt, batch_size=4, seed=3, src_pad=0, tgt_pad=0)
    for _ in range(10):  # into the second epoch (8 batches each)
        run.next()
    fresh = PairBatches(src, tgt, batch_size=4, seed=3, src_pad=0, tgt_pad=0)
    fresh.epoch, fresh.position = run.epoch, run.position
    assert (fresh.epoch, fresh.position) == (1, 2)
    for _ in range(12):  # across the next epoch boundary
        (expected, new_a), (got, new_b) = run.next(), fresh.next()
        assert new_a == new_b
        assert all(torch.equal(x, y) for x, y in zip(expected, got))


def test_new_epoch_flag():
    src, tgt = _random_pairs(5)
    batches = PairBatches(src, tgt, batch_size=2, seed=0, src_pad=0, tgt_pad=0)
    flags = [batches.next()[1] for _ in range(7)]
    assert flags == [False, False, False, True, False, False, True]


def test_padding_values_and_lengths():
    src = [[5, 6, 7], [8]]
    tgt = [[1], [2, 3, 4, 9]]
    batches = PairBatches(src, tgt, batch_size=2, seed=0, src_pad=-1, tgt_pad=99, bucket=False)
    s, s_len, t, t_len = batches.batch(0, 0)
    assert s.dtype == t.dtype == s_len.dtype == t_len.dtype == torch.int64
    by_first = {int(row[0]): i for i, row in enumerate(s)}
    i, j = by_first[5], by_first[8]
    assert s[i].tolist() == [5, 6, 7] and s[j].tolist() == [8, -1, -1]
    assert t[i].tolist() == [1, 99, 99, 99] and t[j].tolist() == [2, 3, 4, 9]
    assert (s_len[i], s_len[j], t_len[i], t_len[j]) == (3, 1, 1, 4)


def _mean_spread(batches, side):
    spreads = []
    for index in range(batches.windows_per_epoch):
        lengths = batches.batch(0, index)[1 if side == "src" else 3]
        spreads.append(int(lengths.max() - lengths.min()))
    return sum(spreads) / len(spreads)


def test_bucketing_keeps_lengths_close():
    src, tgt = _random_pairs(16 * BUCKET_BATCHES, seed=5, longest=40)
    bucketed = PairBatches(src, tgt, batch_size=16, seed=2, src_pad=0, tgt_pad=0)
    plain = PairBatches(src, tgt, batch_size=16, seed=2, src_pad=0, tgt_pad=0, bucket=False)
    assert _mean_spread(bucketed, "src") < _mean_spread(plain, "src") / 4
    # One chunk here: batches are cut from one run sorted by source length, so their
    # length ranges do not overlap.
    ranges = sorted((min(len(src[i]) for i in b), max(len(src[i]) for i in b)) for b in bucketed.plan(0))
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in itertools.pairwise(ranges))
    # ... but the batches come shuffled, not from short to long.
    means = [sum(len(src[i]) for i in b) / len(b) for b in bucketed.plan(0)]
    assert means != sorted(means) and means != sorted(means, reverse=True)
    # Ties in source length are broken by target length.
    many = PairBatches([[1]] * 64, [[1] * n for n in range(64, 0, -1)], batch_size=8, seed=0,
                       src_pad=0, tgt_pad=0)
    assert _mean_spread(many, "tgt") == 7


@pytest.mark.parametrize("src, tgt, size, message", [
    ([[1]], [[1], [2]], 1, "1 sources but 2 targets"),
    ([], [], 1, "no pairs"),
    ([[1]], [[1]], 0, "batch_size"),
    ([[1], []], [[1], [2]], 1, "pair 1 has no source tokens"),
    ([[1], [2]], [[], [2]], 1, "pair 0 has no target tokens"),
])
def test_bad_inputs(src, tgt, size, message):
    with pytest.raises(ValueError, match=message):
        PairBatches(src, tgt, batch_size=size, seed=0, src_pad=0, tgt_pad=0)
