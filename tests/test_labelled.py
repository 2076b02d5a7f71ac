"""Labelled examples: reading the three layouts, label checks, the stratified split,
class weights, and resumable batching."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from charrnn.errors import ConfigError, CorpusError, InvalidUtf8Error
from charrnn.text.labelled import (
    Example,
    LabelledBatches,
    check_labels,
    class_weights,
    label_counts,
    padded,
    read_labelled,
    strip_label,
    stratified_split,
)

# Tricky text on purpose: emoji (outside the BMP), Korean, a comma and a quote character.
EXAMPLES = [
    Example("a good film", "pos"),
    Example("it 's a \"charming\" movie", "pos"),
    Example("재미있는 영화 😀", "pos"),
    Example("dull, slow and long", "neg"),
    Example("지루한 영화 👎🏽", "neg"),
    Example("not worth it", "neg"),
    Example("so-so", "meh"),
]


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def raises(exc, *fragments):
    """pytest.raises that also checks the message holds every fragment and no flag."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *args):
            handled = self.ctx.__exit__(*args)
            if not handled:
                return False  # another exception type: let it propagate as it is
            message = str(self.info.value)
            for fragment in fragments:
                assert fragment in message, (fragment, message)
            assert "--" not in message, message
            return handled

    return _Check()


# ---------------------------------------------------------------------------- formats


def test_all_formats_give_the_same_examples(tmp_path: Path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for label in {e.label for e in EXAMPLES}:
        lines = [e.text for e in EXAMPLES if e.label == label]
        write(folder / f"{label}.txt", "\n\n".join(lines) + "\n")  # blank lines are skipped
    fasttext = write(tmp_path / "train.ft", "".join(f"__label__{e.label} {e.text}\n" for e in EXAMPLES))
    tsv = write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"{e.text}\t{e.label}\n" for e in EXAMPLES))
    with open(tmp_path / "train.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "text"])
        writer.writerows([e.label, e.text] for e in EXAMPLES)
    expected = sorted(EXAMPLES)
    for source in (folder, fasttext, tsv, tmp_path / "train.csv"):
        assert sorted(read_labelled(source)) == expected, source


def test_folder_order_hidden_files_and_subfolders(tmp_path: Path):
    write(tmp_path / "Korean.txt", "Kim\nPark\n")
    write(tmp_path / "Arabic.txt", "Nader\r\n  Khoury  \r\n")
    write(tmp_path / ".DS_Store", "junk")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "Other.txt", "x\n")
    assert read_labelled(tmp_path) == [
        Example("Nader", "Arabic"), Example("Khoury", "Arabic"),
        Example("Kim", "Korean"), Example("Park", "Korean"),
    ]


def test_sst2_like_tsv(tmp_path: Path):
    text = ('sentence\tlabel\n'
            'hide new secretions from the parental units \t0\n'
            'it \'s a "charming" and often affecting journey . \t1\n'
            '" a sometimes tedious film . \t0\n')
    expected = [
        Example("hide new secretions from the parental units", "0"),
        Example('it \'s a "charming" and often affecting journey .', "1"),
        Example('" a sometimes tedious film .', "0"),
    ]
    assert read_labelled(write(tmp_path / "train.tsv", text)) == expected
    # Without the .tsv suffix the tab in the header line gives the delimiter.
    assert read_labelled(write(tmp_path / "train.txt", text)) == expected


def test_csv_quoting_bom_and_multiline_field(tmp_path: Path):
    text = '\ufeffReview,Sentiment\n"great, really",pos\n"two\nlines",neg\nplain,neg\n'
    assert read_labelled(write(tmp_path / "data.csv", text)) == [
        Example("great, really", "pos"), Example("two\nlines", "neg"), Example("plain", "neg"),
    ]


def test_explicit_columns(tmp_path: Path):
    path = write(tmp_path / "reviews.csv", "id,body,stars\n1,lovely,5\n2,awful,1\n")
    assert read_labelled(path, text_column="body", label_column="stars") == [
        Example("lovely", "5"), Example("awful", "1"),
    ]
    # Case-insensitive when unambiguous; naming one column still lets the other be found.
    path2 = write(tmp_path / "two.csv", "Name,Language,comment\nKim,Korean,x\nNader,Arabic,y\n")
    assert read_labelled(path2, text_column="comment")[0] == Example("x", "Korean")
    assert read_labelled(path2, label_column="LANGUAGE")[0] == Example("Kim", "Korean")


def test_unknown_or_same_column_is_a_config_error(tmp_path: Path):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\nfine\t1\n")
    with raises(ConfigError, str(path), "'foo'", "columns: sentence, label"):
        read_labelled(path, text_column="foo")
    with raises(ConfigError, "'bar'"):
        read_labelled(path, label_column="bar")
    with raises(ConfigError, "'sentence'"):
        read_labelled(path, text_column="sentence", label_column="sentence")


def test_columns_not_found(tmp_path: Path):
    path = write(tmp_path / "data.csv", "foo,bar\na,b\n")
    with raises(CorpusError, str(path), "foo, bar", "text and label"):
        read_labelled(path)
    # A headerless file: its first row is shown as the columns.
    path = write(tmp_path / "nohead.tsv", "good film\tpos\nbad film\tneg\n")
    with raises(CorpusError, "good film, pos", "header"):
        read_labelled(path)


def test_columns_are_only_for_tables(tmp_path: Path):
    fasttext = write(tmp_path / "a.txt", "__label__x hello\n")
    with raises(ConfigError, str(fasttext), "fastText"):
        read_labelled(fasttext, text_column="text")
    with raises(ConfigError, str(tmp_path)):
        read_labelled(tmp_path, label_column="label")


@pytest.mark.parametrize("row, fragment", [
    ("fine\t\n", "empty label"),
    ("   \t1\n", "empty text"),
    ("fine\t1\textra\n", "3 field(s)"),
    ("lonely\n", "1 field(s)"),
])
def test_bad_table_rows_name_the_line(tmp_path: Path, row: str, fragment: str):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\nok\t0\n\n" + row + "ok\t1\n")
    with raises(CorpusError, str(path), "line 4", fragment):
        read_labelled(path)


def test_unclosed_csv_quote_points_at_its_line(tmp_path: Path):
    path = write(tmp_path / "data.csv", 'text,label\nok,1\n"never closed,0\nmore,1\nrows,0\n')
    with raises(CorpusError, "line 3", "never closed?"):
        read_labelled(path)


def test_header_without_rows(tmp_path: Path):
    with raises(CorpusError, "no examples"):
        read_labelled(write(tmp_path / "train.tsv", "sentence\tlabel\n\n"))


def test_fasttext(tmp_path: Path):
    path = write(tmp_path / "train.txt", "\n__label__pos   a  good film \n__label__neg\tbad\n")
    assert read_labelled(path) == [Example("a  good film", "pos"), Example("bad", "neg")]


@pytest.mark.parametrize("line, fragment", [
    ("__label__pos", "no text"),
    ("__label__pos   ", "no text"),
    ("plain text", "no '__label__' prefix"),
    ("__label__a __label__b text", "several labels"),
    ("__label__ text", "empty label"),
])
def test_bad_fasttext_lines_name_the_line(tmp_path: Path, line: str, fragment: str):
    path = write(tmp_path / "train.txt", f"__label__x fine\n\n{line}\n__label__y fine\n")
    with raises(CorpusError, str(path), "line 3", fragment):
        read_labelled(path)


def test_empty_folder_and_folder_without_label_files(tmp_path: Path):
    with raises(CorpusError, str(tmp_path), "no label files"):
        read_labelled(tmp_path)
    write(tmp_path / ".hidden", "x\n")
    (tmp_path / "sub").mkdir()
    with raises(CorpusError, "no label files"):
        read_labelled(tmp_path)


def test_bad_files_in_folder_are_named(tmp_path: Path):
    write(tmp_path / "Arabic.txt", "Nader\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with raises(CorpusError, "image.png", "binary"):
        read_labelled(tmp_path)
    (tmp_path / "image.png").unlink()
    write(tmp_path / "Empty.txt", "\n  \n")
    with raises(CorpusError, "Empty.txt", "no examples"):
        read_labelled(tmp_path)
    (tmp_path / "Empty.txt").unlink()
    write(tmp_path / "Arabic.csv", "x\n")
    with raises(CorpusError, "Arabic.txt", "'Arabic'"):
        read_labelled(tmp_path)


def test_invalid_utf8_names_file_and_offset(tmp_path: Path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("sentence\tlabel\ncaf".encode() + b"\xe9\t1\n")
    with raises(InvalidUtf8Error, str(path), "offset 18"):
        read_labelled(path)
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "French.txt").write_bytes(b"Ren\xe9\n")
    with raises(CorpusError, "French.txt", "offset 3"):
        read_labelled(folder)


def test_empty_and_missing_files(tmp_path: Path):
    with raises(CorpusError, "empty"):
        read_labelled(write(tmp_path / "empty.tsv", " \n\n"))
    with raises(CorpusError, "no such file"):
        read_labelled(tmp_path / "missing.tsv")


def test_strip_label():
    assert strip_label("__label__pos good film") == "good film"
    assert strip_label("__label__pos  __label__x good  film\n") == "good  film"
    assert strip_label("__label__pos") == ""
    assert strip_label("good film") == "good film"
    assert strip_label("a __label__pos in the middle") == "a __label__pos in the middle"
    assert strip_label("재미있는 영화 😀") == "재미있는 영화 😀"


# --------------------------------------------------------------- labels and the split


def test_check_labels():
    train = [Example("a", "pos"), Example("b", "neg"), Example("c", "pos")]
    assert check_labels(train, [Example("d", "neg")], "train.tsv", "dev.tsv") == ["neg", "pos"]
    with raises(CorpusError, "train.tsv", "only one label ('pos')", "at least two"):
        check_labels([e for e in train if e.label == "pos"], [], "train.tsv", "dev.tsv")
    with raises(CorpusError, "dev.tsv", "label 'neutral' does not appear in the training data"):
        check_labels(train, [Example("x", "neutral"), Example("y", "pos")], "train.tsv", "dev.tsv")
    with raises(CorpusError, "labels 'a', 'z' do not appear"):
        check_labels(train, [Example("x", "z"), Example("y", "a")], "train.tsv", "dev.tsv")
    with raises(CorpusError, "train.tsv", "no training examples"):
        check_labels([], [], "train.tsv", "dev.tsv")


def _mix(n_pos: int = 80, n_neg: int = 20) -> list[Example]:
    # Interleaved so "original order preserved" is a real check.
    examples = [Example(f"p{i}", "pos") for i in range(n_pos)] + [Example(f"n{i}", "neg") for i in range(n_neg)]
    return sorted(examples, key=lambda e: int(e.text[1:]))


def test_stratified_split_keeps_proportions_and_order():
    examples = _mix()
    train, val = stratified_split(examples, 0.25, seed=1)
    assert sorted(train + val) == sorted(examples)
    assert len(val) == 25
    counts = Counter(e.label for e in val)
    assert abs(counts["pos"] - 0.8 * len(val)) <= 1 and abs(counts["neg"] - 0.2 * len(val)) <= 1
    position = {e: i for i, e in enumerate(examples)}
    assert [position[e] for e in train] == sorted(position[e] for e in train)
    assert [position[e] for e in val] == sorted(position[e] for e in val)


def test_stratified_split_is_seeded():
    examples = _mix()
    assert stratified_split(examples, 0.25, seed=1) == stratified_split(list(examples), 0.25, seed=1)
    assert stratified_split(examples, 0.25, seed=1)[1] != stratified_split(examples, 0.25, seed=2)[1]


def test_stratified_split_small_labels():
    examples = _mix(40, 0) + [Example("two-a", "b"), Example("two-b", "b"), Example("one", "c")]
    train, val = stratified_split(examples, 0.1, seed=0)
    val_counts = Counter(e.label for e in val)
    assert val_counts == {"pos": 4, "b": 1}  # at least one of two, none of one
    train, val = stratified_split(examples, 0.99, seed=0)
    assert {e.label for e in train} == {"pos", "b", "c"}  # never all of a label


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan")])
def test_stratified_split_rejects_bad_fractions(fraction):
    with raises(ConfigError, "between 0 and 1"):
        stratified_split(_mix(), fraction, seed=0)


def test_label_counts_and_class_weights():
    examples = _mix(6, 2) + [Example("z", "mid")] * 4
    counts = label_counts(examples)
    assert list(counts.items()) == [("mid", 4), ("neg", 2), ("pos", 6)]
    labels = ["mid", "neg", "pos"]
    weights = class_weights(counts, labels)
    assert weights.dtype == torch.float32
    expected = [12 / (3 * 4), 12 / (3 * 2), 12 / (3 * 6)]
    assert torch.allclose(weights, torch.tensor(expected))
    # Each class then carries the same total weight.
    totals = [w * counts[label] for w, label in zip(weights.tolist(), labels)]
    assert max(totals) - min(totals) < 1e-5
    with pytest.raises(ValueError):
        class_weights(counts, labels + ["missing"])


# ------------------------------------------------------------------------- batching


def _data(n: int = 103, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    """Sequences of varied lengths whose first token is their own index (labels too), so
    a batch can be traced back to the examples in it."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 40, (n,), generator=g).tolist()
    ids = [[i + 1000] + [7] * (length - 1) for i, length in enumerate(lengths)]
    return ids, [i % 5 for i in range(n)]


def _members(batch) -> list[int]:
    ids, lengths, labels = batch
    members = (ids[:, 0] - 1000).tolist()
    assert labels.tolist() == [m % 5 for m in members]
    return members


@pytest.mark.parametrize("bucket", [True, False])
def test_every_example_once_per_epoch(bucket: bool):
    ids, labels = _data()
    batches = LabelledBatches(ids, labels, batch_size=8, seed=3, bucket=bucket)
    assert batches.windows_per_epoch == math.ceil(103 / 8)
    for epoch in range(2):
        seen = []
        sizes = []
        for index in range(batches.windows_per_epoch):
            batch = batches.batch(epoch, index)
            sizes.append(batch[0].shape[0])
            seen += _members(batch)
        assert sorted(seen) == list(range(103))
        assert sorted(sizes) == [7] + [8] * 12  # the partial batch is kept


def test_padding_and_shapes():
    ids, labels = _data(30)
    batches = LabelledBatches(ids, labels, batch_size=6, seed=0, pad_id=99)
    for index in range(batches.windows_per_epoch):
        x, lengths, y = batches.batch(0, index)
        assert x.dtype == lengths.dtype == y.dtype == torch.long
        assert x.shape == (lengths.shape[0], int(lengths.max())) and y.shape == lengths.shape
        for row, length in zip(x, lengths.tolist()):
            member = int(row[0]) - 1000
            assert row[:length].tolist() == ids[member]
            assert (row[length:] == 99).all()


def test_bucketing_reduces_padding():
    ids, labels = _data(400)

    def total_padding(bucket: bool) -> int:
        batches = LabelledBatches(ids, labels, batch_size=8, seed=0, bucket=bucket)
        total = 0
        for index in range(batches.windows_per_epoch):
            x, lengths, _ = batches.batch(0, index)
            total += x.numel() - int(lengths.sum())
        return total

    assert total_padding(True) < total_padding(False) / 4


def test_epoch_order_is_a_function_of_seed_and_epoch():
    ids, labels = _data()
    a = LabelledBatches(ids, labels, batch_size=8, seed=5)
    b = LabelledBatches(ids, labels, batch_size=8, seed=5)
    order = lambda batches, epoch: [_members(batches.batch(epoch, i)) for i in range(batches.windows_per_epoch)]
    torch.manual_seed(123)  # global RNG state must not matter
    assert order(a, 1) == order(b, 1)
    assert order(a, 0) != order(a, 1)
    assert order(a, 0) != order(LabelledBatches(ids, labels, batch_size=8, seed=6), 0)
    with pytest.raises(IndexError):
        a.batch(0, a.windows_per_epoch)


def test_resume_gives_the_same_batches_across_an_epoch_boundary():
    ids, labels = _data(50)
    full = LabelledBatches(ids, labels, batch_size=8, seed=11)  # 7 batches per epoch
    reference = [full.next() for _ in range(20)]
    for stop in (3, 7, 10, 14):
        first = LabelledBatches(ids, labels, batch_size=8, seed=11)
        for _ in range(stop):
            first.next()
        resumed = LabelledBatches(ids, labels, batch_size=8, seed=11)
        resumed.epoch, resumed.position = first.epoch, first.position
        for (want, want_new), _ in zip(reference[stop:], range(20 - stop)):
            got, got_new = resumed.next()
            assert got_new == want_new
            assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_new_epoch_flag():
    ids, labels = _data(20)
    batches = LabelledBatches(ids, labels, batch_size=8, seed=0)  # 3 batches per epoch
    flags = [batches.next()[1] for _ in range(9)]
    assert flags == [False, False, False, True, False, False, True, False, False]
    assert (batches.epoch, batches.position) == (2, 3)


def test_constructor_checks():
    with pytest.raises(ValueError, match="no tokens"):
        LabelledBatches([[1], []], [0, 1], batch_size=2, seed=0)
    with pytest.raises(ValueError):
        LabelledBatches([[1]], [0, 1], batch_size=2, seed=0)
    with pytest.raises(ValueError):
        LabelledBatches([[1]], [0], batch_size=0, seed=0)
    with pytest.raises(ValueError):
        LabelledBatches([], [], batch_size=2, seed=0)


def test_padded():
    ids, lengths = padded([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    assert ids.dtype == lengths.dtype == torch.long
    with pytest.raises(ValueError):
        padded([[1], []])
    with pytest.raises(ValueError):
        padded([])
