"""`charrnn eval perplexity --show / --html` and `charrnn inspect neurons` end to end on tiny
untrained checkpoints: colours and pages, JSON, and one-line errors."""

import json
import math
import re
from html.parser import HTMLParser

import pytest
import torch

from charrnn.checkpoint import save_checkpoint
from charrnn.config import TrainConfig
from charrnn.task_configs import ClassifierConfig
from charrnn.diagnostics.neurons import FEATURES
from charrnn.models.classifier import SequenceClassifier
from charrnn.models.lm import RNNLanguageModel
from charrnn.text.char import CharTokenizer
from conftest import TINY_TEXT, tiny_model_config
from test_cli import run

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TEXT = "the cat <sat> & the dog\nZ met a mat.\n"  # <, >, & and Z never occur in TINY_TEXT



def one_line_error(code, out, err, pattern):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("charrnn: error: ") and pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("inspect")
    tok = CharTokenizer.train(TINY_TEXT)
    paths = {}
    for cell in ("lstm", "gru"):
        torch.manual_seed(0)
        model = RNNLanguageModel(tiny_model_config(cell, vocab_size=tok.vocab_size, hidden_size=11))
        paths[cell] = base / f"{cell}.safetensors"
        save_checkpoint(paths[cell], model, TrainConfig(), tok)
    clf = SequenceClassifier(ClassifierConfig(vocab_size=tok.vocab_size, num_labels=2, hidden_size=4, embedding_dim=3))
    paths["clf"] = base / "clf.safetensors"
    save_checkpoint(paths["clf"], clf, TrainConfig(), tok, task="classify", task_state={"labels": ["a", "b"]})
    paths["text"] = base / "text.txt"
    paths["text"].write_text(TEXT, encoding="utf-8")
    return paths


class _Page(HTMLParser):
    """The text inside <pre> elements, and every tag seen."""

    def __init__(self):
        super().__init__()
        self.pres, self.tags, self._in = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "pre":
            self._in = True
            self.pres.append("")

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.pres[-1] += data


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert not [t for t, a in page.tags if t in ("script", "link", "img")]  # self-contained
    return page


def test_show_colours_the_text_in_a_terminal(capsys, monkeypatch, runs):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.delenv("NO_COLOR", raising=False)
    code, out, err = run(capsys, "eval", "perplexity", runs["lstm"], runs["text"], "--show", "--device", "cpu")
    assert code == 0, err
    assert "\x1b[" in out and "48;2;" in out  # background colours
    plain = ANSI.sub("", out)
    assert TEXT in plain and "bits per character" in plain
    assert plain.index("surprisal, bits per character:") < plain.index(TEXT) < plain.index("perplexity (per token)")


def test_show_without_a_terminal_is_the_plain_text(capsys, runs):
    code, out, _ = run(capsys, "eval", "perplexity", runs["lstm"], runs["text"], "--show", "--show-chars", "9",
                       "--device", "cpu")
    assert code == 0 and "\x1b[" not in out
    assert f"the first 9 of {len(TEXT)} characters" in out and TEXT[:9] + "\n" in out and TEXT[:10] not in out


def test_html_page_holds_the_escaped_text_and_the_bpc(capsys, runs, tmp_path):
    page_path = tmp_path / "s.html"
    code, out, err = run(capsys, "eval", "perplexity", runs["lstm"], runs["text"], "--html", page_path, "--json",
                         "--streams", "1", "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert result["html"] == str(page_path)
    raw = page_path.read_text(encoding="utf-8")
    assert all(f">{e}</span>" in raw for e in ("&lt;", "&gt;", "&amp;")) and f"{result['bpc']:.4f} bits per character" in raw
    page = _parse(page_path)
    assert page.pres == [TEXT]  # every character, newlines kept (their marks are CSS)
    spans = [a for t, a in page.tags if t == "span" and "title" in a]
    assert len(spans) == len(TEXT)
    assert spans[0]["class"] == "ctx" and spans[TEXT.index("Z")]["class"] == "unk"
    assert re.match(r'"h": \d+\.\d\d bits\nlikeliest: ', spans[1]["title"])


def test_json_with_show_has_each_tokens_bits(capsys, runs):
    code, out, _ = run(capsys, "eval", "perplexity", runs["lstm"], runs["text"], "--show", "--json", "--streams", "1",
                       "--device", "cpu")
    assert code == 0
    result = json.loads(out)
    tokens = result["surprisal"]["tokens"]
    assert "".join(t["text"] for t in tokens) == TEXT
    bits = [t["bits"] for t in tokens if t["bits"] is not None]
    assert len(bits) == result["tokens"]
    assert sum(bits) * math.log(2) / result["tokens"] == pytest.approx(result["loss"], rel=1e-5)
    assert [t["text"] for t in tokens if t["unknown"]] == ["<", ">", "&", "Z"]


def test_show_and_html_refuse_other_model_kinds(capsys, runs, tmp_path):
    one_line_error(*run(capsys, "eval", "perplexity", runs["clf"], runs["text"], "--show"), "classify model")
    one_line_error(*run(capsys, "eval", "perplexity", runs["lstm"], runs["text"], "--html", tmp_path / "no" / "x.html"),
                   "no such directory")


def test_neurons_prints_the_table_and_writes_the_page(capsys, runs, tmp_path):
    page_path = tmp_path / "n.html"
    code, out, err = run(capsys, "inspect", "neurons", runs["lstm"], runs["text"], "-o", page_path, "--units", "2,7",
                         "--device", "cpu")
    assert code == 0, err
    for name in ("line_position", "in_word", "in_quotes", "layer 2 of 2", "cell state c", "(chosen)"):
        assert name in out
    assert "written to" in err
    page = _parse(page_path)
    # the best unit of line_position, in_word and uppercase (the other features are constant here), 2 chosen
    assert len(page.pres) == 3 + 2
    assert all(p == TEXT for p in page.pres)
    raw = page_path.read_text(encoding="utf-8")
    assert ">&lt;</span>" in raw and ">&amp;</span>" in raw and "unit 7 (chosen)" in raw


def test_neurons_json(capsys, runs):
    code, out, _ = run(capsys, "inspect", "neurons", runs["gru"], runs["text"], "--json", "--top", "2", "--layer", "1",
                       "--features", "line_position,in_quotes", "--max-chars", "20", "--device", "cpu")
    assert code == 0
    rep = json.loads(out)
    assert (rep["layer"], rep["kind"], rep["units"], rep["chars"]) == (1, "h", 11, 20)
    assert list(rep["features"]) == ["line_position", "in_quotes"]
    assert len(rep["features"]["line_position"]["top"]) == 2 and rep["features"]["in_quotes"]["top"] == []
    assert "html" not in rep


@pytest.mark.parametrize("args, pattern", [
    (["missing-run"], "missing-run"),
    (["{lstm}", "--units", "11"], "0 to 10"),
    (["{lstm}", "--units", "a"], "not a unit"),
    (["{lstm}", "--layer", "3"], "1 to 2"),
    (["{gru}", "--kind", "c"], "no cell state"),
    (["{lstm}", "--features", "in_quotes,nope"], "unknown nope"),
    (["{clf}"], "language models only"),
    (["{lstm}", "{empty}"], "empty text"),
])
def test_neurons_errors_are_one_line(capsys, runs, tmp_path, args, pattern):
    (tmp_path / "empty.txt").write_text("")
    names = {**{k: str(v) for k, v in runs.items()}, "empty": str(tmp_path / "empty.txt")}
    argv = [a.format(**names) for a in args]
    if "{empty}" not in args:
        argv.insert(1, str(runs["text"]))
    one_line_error(*run(capsys, "inspect", "neurons", *argv, "--device", "cpu"), pattern)


def test_the_help_names_every_feature(capsys):
    code, out, _ = run(capsys, "inspect", "neurons", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert all(name in flat for name in FEATURES)
