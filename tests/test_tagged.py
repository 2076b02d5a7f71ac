"""Tagged files (CoNLL-U and CoNLL-2003-style columns): reading, errors, and writing back."""

import gzip
import io
import re

import pytest

from charrnn.errors import ConfigError, CorpusError
from charrnn.text.tagged import Block, Sentence, is_conll, read_blocks, read_tagged

GUM = "ud-english-gum/en_gum-ud-{}.conllu"

# The format's tricky cases: document and sentence comments, a multiword token and its
# words, an empty node, a multiword token mid-sentence, no blank line after the last sentence.
CONLLU = (
    "# newdoc id = doc1\n"
    "# sent_id = 1\n"
    "# text = vámonos al mar\n"
    "1-2\tvámonos\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tvamos\tir\tVERB\tVMIP1P0\t_\t0\troot\t_\t_\n"
    "2\tnos\tnosotros\tPRON\tPP1CP00\t_\t1\tobj\t_\t_\n"
    "3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "3\ta\ta\tADP\tSPS00\t_\t5\tcase\t_\t_\n"
    "4\tel\tel\tDET\tDA0MS0\t_\t5\tdet\t_\t_\n"
    "5\tmar\tmar\tNOUN\tNCMS000\t_\t1\tobl\t_\tSpaceAfter=No\n"
    "\n"
    "# sent_id = 2\n"
    "# text = Sue likes coffee and Bill tea\n"
    "1\tSue\tSue\tPROPN\tNNP\t_\t2\tnsubj\t_\t_\n"
    "2\tlikes\tlike\tVERB\tVBZ\t_\t0\troot\t_\t_\n"
    "3\tcoffee\tcoffee\tNOUN\tNN\t_\t2\tobj\t_\t_\n"
    "4\tand\tand\tCCONJ\tCC\t_\t5\tcc\t_\t_\n"
    "5\tBill\tBill\tPROPN\tNNP\t_\t2\tconj\t_\t_\n"
    "5.1\tlikes\tlike\tVERB\tVBZ\t_\t_\t_\t2:conj\tCopyOf=2\n"
    "6\ttea\ttea\tNOUN\tNN\t_\t5.1\tobj\t_\t_"
)
CONLLU_TOKENS = [["vamos", "nos", "a", "el", "mar"], ["Sue", "likes", "coffee", "and", "Bill", "tea"]]

# CoNLL-2003 itself: space-separated, -DOCSTART- and the blank line after it.
CONLL2003 = (
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "EU NNP B-NP B-ORG\n"
    "rejects VBZ B-VP O\n"
    "German JJ B-NP B-MISC\n"
    "\n"
    "Peter NNP B-NP B-PER\n"
    "Blackburn NNP I-NP I-PER\n"
    "\n"
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "BRUSSELS NNP B-NP B-LOC\n"
    "\n"
)


def _write(tmp_path, data, name="data.conllu"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _gum(split):
    from conftest import SHARED_CORPORA

    path = SHARED_CORPORA / GUM.format(split)
    if not path.exists():
        pytest.skip("shared corpora not available")
    return path


# ---------------------------------------------------------------------------- CoNLL-U


@pytest.mark.parametrize("newline, bom", [("\n", ""), ("\r\n", ""), ("\r\n", "\ufeff")])
def test_conllu_tricky_cases(tmp_path, newline, bom):
    path = _write(tmp_path, bom + CONLLU.replace("\n", newline))
    assert read_tagged(path) == [
        Sentence(CONLLU_TOKENS[0], ["VERB", "PRON", "ADP", "DET", "NOUN"], 5),
        Sentence(CONLLU_TOKENS[1], ["PROPN", "VERB", "NOUN", "CCONJ", "PROPN", "NOUN"], 14),
    ]


def test_conllu_other_columns(tmp_path):
    path = _write(tmp_path, CONLLU)
    xpos = read_tagged(path, "xpos")
    assert [s.tokens for s in xpos] == CONLLU_TOKENS
    assert xpos[1].tags == ["NNP", "VBZ", "NN", "CC", "NNP", "NN"]
    assert read_tagged(path, "DEPREL")[0].tags == ["root", "obj", "case", "det", "obl"]
    assert read_tagged(path, "5") == xpos  # the 1-based column number works too


def test_conllu_against_the_conllu_package():
    conllu = pytest.importorskip("conllu")
    path = _gum("dev")
    ours = read_tagged(path)
    theirs = [[t for t in sentence if isinstance(t["id"], int)]
              for sentence in conllu.parse(path.read_text(encoding="utf-8"))]
    assert [s.tokens for s in ours] == [[t["form"] for t in s] for s in theirs]
    assert [s.tags for s in ours] == [[t["upos"] for t in s] for s in theirs]


# ---------------------------------------------------------------------------- columns


def test_columns_space_separated_with_docstart(tmp_path):
    path = _write(tmp_path, CONLL2003, "train.txt")
    assert read_tagged(path) == [
        Sentence(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"], 3),
        Sentence(["Peter", "Blackburn"], ["B-PER", "I-PER"], 7),
        Sentence(["BRUSSELS"], ["B-LOC"], 12),
    ]
    assert read_tagged(path, "2")[0].tags == ["NNP", "VBZ", "JJ"]
    assert read_tagged(path, "3")[1].tags == ["B-NP", "I-NP"]


def test_columns_tab_separated(tmp_path):
    # Tokens may hold spaces when tabs separate the columns; surrounding spaces, trailing
    # tabs and a last line without an ending are ignored.
    data = "\n\nNew York\tNNP\tB-LOC \r\nis\tVBZ\tO\t\n\n\n# comment\nnice \tJJ\tO"
    path = _write(tmp_path, data, "ner.tsv")
    assert read_tagged(path) == [
        Sentence(["New York", "is"], ["B-LOC", "O"], 3),
        Sentence(["nice"], ["O"], 8),
    ]
    assert read_tagged(path, " 2 ")[1].tags == ["JJ"]


def test_a_tag_of_underscore_is_a_tag(tmp_path):
    path = _write(tmp_path, "a\t_\nb\tX\n")
    assert read_tagged(path)[0].tags == ["_", "X"]


# ---------------------------------------------------------------------------- errors


def _line(fields):
    return "\t".join(fields) + "\n"


WORD = _line(["1", "cat", "cat", "NOUN", "NN", "_", "0", "root", "_", "_"])


@pytest.mark.parametrize("data, column, error, line, message", [
    ("EU\tB-ORG\nrejects\tVBZ\tO\n", None, CorpusError, 2, "3 column(s), expected 2 like the first token line (line 1)"),
    ("EU NNP B-ORG\n\nrejects O\n", None, CorpusError, 3, "2 column(s), expected 3 like the first token line (line 1, split"),
    (WORD + "2\tsat\tsit\tVERB\n", None, CorpusError, 2, "4 tab-separated columns, expected 10 (CoNLL-U, like line 1)"),
    (WORD + WORD.replace("1", "one", 1), None, CorpusError, 2, "ID 'one' is not a word number"),
    (WORD, "POS", ConfigError, 1, "no column 'POS'; choose one of LEMMA, UPOS, XPOS, FEATS, HEAD, DEPREL, DEPS, MISC"),
    (WORD, "form", ConfigError, 1, "'form' is the word itself, not a tag column"),
    ("\nEU NNP B-ORG\n", "upos", ConfigError, 2, "has no column names; give the tag column by number, not 'upos': 2 to 3"),
    ("EU NNP B-NP B-ORG\n", "5", ConfigError, 1, "tag column 5 is out of range: the file has 4 column(s); choose 2 to 4"),
    ("EU NNP B-NP B-ORG\n", "1", ConfigError, 1, "column 1 holds the tokens"),
    (WORD + "\n# sent_id = 2\n# text = x\n\n" + WORD, None, CorpusError, 3, "a sentence with no tokens (comment"),
    (WORD + "\n# sent_id = 2\n", None, CorpusError, 3, "a sentence with no tokens"),
    ("# only\n\nEU\tO\n", None, CorpusError, 1, "a sentence with no tokens (comment lines only)"),
    (WORD + "\n" + WORD.replace("1", "1-2", 1) + "\n", None, CorpusError, 3, "no word line"),
    ("\n\nEU\nrejects\n", None, CorpusError, 3, "one column; a tagged file has token<TAB>tag lines or CoNLL-U"),
    ("The cat sat .\nA dog barked loudly .\n", None, CorpusError, 2, "5 column(s), expected 4"),  # plain text
    ("EU\tO\n\tO\n", None, CorpusError, 2, "empty token (column 1)"),
    ("EU\tX\tO\nrejects\t\tO\n", "2", CorpusError, 2, "empty tag (column 2)"),
    (WORD + WORD.replace("cat", " ", 1), None, CorpusError, 2, "empty token (FORM)"),
    (WORD + WORD.replace("NOUN", "", 1), None, CorpusError, 2, "empty tag (UPOS)"),
    (WORD.replace("NOUN", "_") + "\n" + WORD.replace("NOUN", "_"), None, CorpusError, 1,
     "the UPOS column is '_' on every token, so the file has no UPOS tags"),
])
def test_each_error_is_one_line_naming_file_and_line(tmp_path, data, column, error, line, message):
    path = _write(tmp_path, data)
    with pytest.raises(error) as caught:
        read_tagged(path, column)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert re.search(rf"\bline {line}\b", text), text
    assert message in text


@pytest.mark.parametrize("data, message", [
    ("", "no sentences (the file is empty)"),
    ("\n \n\t\r\n", "no sentences (only blank lines or -DOCSTART-)"),
    ("-DOCSTART- -X- -X- O\n\n", "no sentences (only blank lines or -DOCSTART-)"),
])
def test_no_sentences(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(CorpusError, match=re.escape(f"{path}: {message}")):
        read_tagged(path)
    with pytest.raises(CorpusError, match=re.escape(f"{path}: {message}")):
        list(read_blocks(io.BytesIO(data.encode()), str(path)))


@pytest.mark.parametrize("data, message", [
    (b"EU\tO\n\x00\x01", "looks like a binary file (NUL byte at offset 5)"),
    (b"EU\tO\nM\xfcnchen\tB-LOC\n", "invalid UTF-8 at byte offset 6 (byte 0xfc)"),
    (gzip.compress(b"EU\tO\n"), "is gzip-compressed"),
])
def test_bad_bytes_give_the_messages_of_text_io(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(CorpusError, match=re.escape(message)):
        read_tagged(path)
    with pytest.raises(CorpusError, match=re.escape(message)):
        list(read_blocks(io.BytesIO(data), str(path)))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_tagged(tmp_path / "missing.conllu")
    with pytest.raises(CorpusError, match="is a directory"):
        read_tagged(tmp_path)


def test_read_blocks_checks_like_read_tagged(tmp_path):
    blocks = read_blocks(io.BytesIO(b"EU\tO\n\nrejects\n"), "in.tsv")
    assert next(blocks).tokens == ["EU"]  # errors come when their line is read
    with pytest.raises(CorpusError, match=r"^in.tsv: line 3: 1 column\(s\), expected 2"):
        next(blocks)
    with pytest.raises(ConfigError, match="choose 2 to 3, 3 adding a column"):
        list(read_blocks(io.BytesIO(b"EU\tO\n"), "in.tsv", "4"))


def test_replace_errors(tmp_path):
    data = b"M\xfcnchen\n"
    with pytest.raises(CorpusError, match="invalid UTF-8"):
        list(read_blocks(io.BytesIO(data), "in"))
    (block,) = read_blocks(io.BytesIO(data), "in", replace_errors=True)
    assert block.tokens == ["M\ufffdnchen"]


# ------------------------------------------------------------------------- writing back


def _split(line, separator):
    fields = line.rstrip("\r\n").split("\t") if separator == "\t" else line.split()
    return [f.strip() for f in fields]


ROUND_TRIPS = {
    "conllu": CONLLU,
    "conllu crlf bom": "\ufeff" + CONLLU.replace("\n", "\r\n") + "\r\n\r\n",
    "conll2003": CONLL2003,
    "conll2003 no final newline, extra blank lines": CONLL2003.replace("\n\n", "\n\n\n").rstrip("\n"),
    "tabs, spaces, comments": "\n\nNew York\tNNP\tB-LOC \r\nis\tVBZ\tO\t\n\n\n# c\nnice \tJJ\t O \n\n\n",
    "trailing docstart": "a  b\n\n-DOCSTART- O\n\n",
}


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_write_round_trips(tmp_path, name):
    data = ROUND_TRIPS[name]
    path = _write(tmp_path, data)
    sentences = read_tagged(path)
    blocks = list(read_blocks(path.open("rb"), str(path)))
    tagged = [b for b in blocks if b.rows]
    assert [b.tokens for b in tagged] == [s.tokens for s in sentences]
    assert all(not b.tokens for b in blocks if not b.rows)  # only a last block may be empty
    assert [i for i, b in enumerate(blocks) if not b.rows] in ([], [len(blocks) - 1])
    own = iter(sentences)
    assert "".join(b.write(next(own).tags if b.rows else []) for b in blocks) == data

    # Other tags change the tag column and nothing else.
    written = "".join(b.write([f"T{i}" for i in range(len(b.rows))]) for b in blocks)
    separator = blocks[0].separator
    before, after = data.split("\n"), written.split("\n")
    assert len(before) == len(after)
    column = blocks[0].column
    changed = 0
    for old, new in zip(before, after):
        a, b = _split(old, separator), _split(new, separator)
        if a != b:
            assert a[:column] + a[column + 1:] == b[:column] + b[column + 1:], (old, new)
            assert re.fullmatch(r"T\d+", b[column])
            changed += 1
    assert changed == sum(len(s.tokens) for s in sentences)


def test_write_round_trips_gum(tmp_path):
    path = _gum("test")
    blocks = list(read_blocks(path.open("rb"), str(path), "xpos"))
    sentences = read_tagged(path, "xpos")
    assert "".join(b.write(s.tags) for b, s in zip(blocks, sentences, strict=True)) == path.read_text(encoding="utf-8")


def test_write_prediction_input(tmp_path):
    # Token-only lines get a tab and the tag (before trailing spaces); '_' is replaced.
    (block,) = read_blocks(io.BytesIO(b"EU\r\nrejects  \n"), "in")
    assert block.write(["B-ORG", "O"]) == "EU\tB-ORG\r\nrejects\tO  \n"
    conllu = "# text = a b\n1\ta\t_\t_\t_\t_\t_\t_\t_\t_\n2\tb\t_\t_\t_\t_\t_\t_\t_\t_\n"
    (block,) = read_blocks(io.BytesIO(conllu.encode()), "in", "upos")
    assert block.write(["DET", "NOUN"]) == conllu.replace("\ta\t_\t_", "\ta\t_\tDET").replace("\tb\t_\t_", "\tb\t_\tNOUN")
    # A space-separated file may get a new last column.
    (block,) = read_blocks(io.BytesIO(b"EU NNP B-NP\n"), "in", "4")
    assert block.write(["B-ORG"]) == "EU NNP B-NP B-ORG\n"


def test_write_refuses_bad_tags():
    (block,) = read_blocks(io.BytesIO(b"EU NNP\n"), "in")
    for tags in ([], ["A", "B"], [""], ["B ORG"], ["B\tORG"]):
        with pytest.raises(ValueError):
            block.write(tags)


def test_read_blocks_yields_each_sentence_as_it_ends():
    lines = [b"# sent 1\n", b"EU\tO\n", b"rejects\tO\n", b"\n", b"German\tO\n"]

    class Feed(io.RawIOBase):
        """Hands out one line per read, and fails if read past the first blank line."""

        def __init__(self):
            self.served = 0
            self.allowed = 4

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.served >= len(lines):
                return 0
            assert self.served < self.allowed, "read past the end of the first sentence"
            line = lines[self.served]
            buffer[: len(line)] = line
            self.served += 1
            return len(line)

    feed = Feed()
    blocks = read_blocks(io.BufferedReader(feed), "<stdin>")
    first = next(blocks)
    assert (first.tokens, feed.served) == (["EU", "rejects"], 4)
    assert "".join(first.lines) == "# sent 1\nEU\tO\nrejects\tO\n\n"
    feed.allowed = len(lines)
    assert [b.tokens for b in blocks] == [["German"]]


@pytest.mark.parametrize("first_line, name, expected", [
    ("The cat sat .", "in.txt", False),
    ("EU\tB-ORG", "-", True),
    ("# text = The cat", "<stdin>", True),
    ("\ufeff# newdoc", "input", True),
    ("EU NNP B-NP B-ORG", "eng.testa.conll", True),
    ("The cat", "dev.CONLLU", True),
])
def test_is_conll(first_line, name, expected):
    assert is_conll(first_line, name) is expected


def test_block_is_a_plain_dataclass():
    block = Block(["a\n"], [0], ["a"])
    assert block.write(["X"]) == "a\tX\n"
