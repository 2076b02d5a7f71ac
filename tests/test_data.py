import pytest
import torch

from charrnn.text.io import read_corpus, read_text
from charrnn.text.streams import StreamBatches, compact, split_text, stream_layout
from charrnn.errors import CorpusError, CorpusTooSmallError


def test_stream_layout_matches_the_hand_drawn_example():
    ids = torch.arange(13)  # a..m
    data = stream_layout(ids, 3)
    assert data.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_windows_are_consecutive_and_targets_shift_by_one():
    ids = torch.arange(13)
    b = StreamBatches.build(ids, batch_size=3, bptt=2)
    windows = list(b)
    assert len(windows) == b.windows_per_epoch == 2
    (x0, y0), (x1, y1) = windows
    assert x0.tolist() == [[0, 1], [4, 5], [8, 9]]
    assert y0.tolist() == [[1, 2], [5, 6], [9, 10]]
    assert x1.tolist() == [[2], [6], [10]]
    assert y1.tolist() == [[3], [7], [11]]
    # Each window starts where the previous one stopped, in every stream.
    for s in range(3):
        assert x1[s, 0] == x0[s, -1] + 1


def test_windows_are_views_not_copies():
    ids = torch.arange(50, dtype=torch.int16)
    b = StreamBatches.build(ids, batch_size=5, bptt=3)
    x, y = b.window(1)
    assert x.data_ptr() != 0 and x.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr()


def test_next_walks_epochs_and_flags_their_starts():
    b = StreamBatches.build(torch.arange(21), batch_size=2, bptt=4)  # S = 10 -> 3 windows
    flags = [b.next()[2] for _ in range(7)]
    assert flags == [True, False, False, True, False, False, True]
    assert b.epoch == 2


def test_every_target_of_an_epoch_is_seen_once():
    ids = torch.arange(100)
    b = StreamBatches.build(ids, batch_size=4, bptt=6)
    seen = torch.cat([y.reshape(-1) for _, y in b]).sort().values
    expected = torch.cat([torch.arange(s * 25 + 1, (s + 1) * 25) for s in range(4)])
    assert seen.tolist() == expected.sort().values.tolist()


def test_corpus_too_small_is_a_clear_error():
    with pytest.raises(CorpusTooSmallError) as e:
        StreamBatches.build(torch.arange(20), batch_size=4, bptt=8)
    assert e.value.needed == 36 and e.value.tokens == 20
    assert "batch_size" in str(e.value) and "bptt" in str(e.value)


def test_compact_storage():
    assert compact(torch.tensor([1, 2]), 100).dtype == torch.int16
    assert compact(torch.tensor([1, 2]), 70_000).dtype == torch.int32


def test_invalid_utf8_names_file_and_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello \xff world")
    with pytest.raises(CorpusError, match=r"bad.txt: invalid UTF-8 at byte offset 6"):
        read_text(p)
    assert read_text(p, replace_errors=True) == "hello \ufffd world"


def test_binary_missing_directory_and_empty(tmp_path):
    (tmp_path / "bin").write_bytes(b"abc\x00def")
    with pytest.raises(CorpusError, match="binary"):
        read_text(tmp_path / "bin")
    with pytest.raises(CorpusError, match="no such file"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="directory"):
        read_text(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        read_corpus([str(tmp_path / "empty.txt")])


def test_read_corpus_concatenates_and_reads_stdin(tmp_path):
    import io

    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "b.txt").write_text("two\n")
    assert read_corpus([str(tmp_path / "a.txt"), "-", str(tmp_path / "b.txt")], stdin=io.BytesIO("ü\n".encode())) == "one\nü\ntwo\n"
    with pytest.raises(CorpusError):
        read_corpus(["-", "-"], stdin=io.BytesIO(b"x"))


def test_split_takes_the_last_fraction_of_characters():
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    train, val = split_text(text, 0.1)
    assert train + val == text and len(val) == 10
    with pytest.raises(CorpusError):
        split_text("abc", 0.1)
