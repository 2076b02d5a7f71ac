"""ONNX export: every graph run by onnxruntime equals PyTorch (within 1e-4 over 100-token
sequences, at sizes other than the traced ones), the JSON is enough to encode and decode
without charrnn, and the command's files and errors."""

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import charrnn  # noqa: E402
from charrnn.checkpoint import save_checkpoint  # noqa: E402
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.task_configs import ClassifierConfig, ConditionalConfig, Seq2SeqConfig, TaggerConfig  # noqa: E402
from charrnn.export import export_checkpoint, session, trace  # noqa: E402
from charrnn.export.graphs import graphs_for  # noqa: E402
from charrnn.models import build_model  # noqa: E402
from charrnn.text.char import CharTokenizer  # noqa: E402
from charrnn.text.symbols import PairTokenizer, SymbolTokenizer  # noqa: E402
from test_cli import assert_one_line_error, run  # noqa: E402

TOL = 1e-4
from conftest import CELLS, SCAN_CELLS
TEXT = "the cat sat on the mat. a dog, a log!\n"


def _graphs(kind, config, seed=0):
    torch.manual_seed(seed)
    model = build_model(kind, config).eval()
    return model, {g.role: session(trace(g)) for g in graphs_for(kind, model)}


def _state(out, cell, start):
    """The state outputs of an onnxruntime call, as the next call's inputs."""
    return {"h": out[start], **({"c": out[start + 1]} if cell == "lstm" else {})}


def _close(got, want):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) < TOL


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS + SCAN_CELLS)
def test_lm_step_by_step_over_100_tokens_equals_pytorch(cell, layers):
    """100 tokens fed one at a time with the state carried through onnxruntime give the
    logits and final state of the model's forward over the whole sequence, at batch 3
    (traced at 2), and reading them in one call gives the same."""
    cfg = ModelConfig(vocab_size=7, cell=cell, layers=layers, hidden_size=5, embedding_dim=3, dropout=0.0)
    model, sess = _graphs("lm", cfg)
    ids = torch.randint(0, 7, (3, 100), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, final = model(ids)
    final = final if isinstance(final, tuple) else (final,)
    state = {k: np.zeros((layers, 3, 5), np.float32) for k in (["h", "c"] if cell == "lstm" else ["h"])}
    for t in range(100):
        out = sess["step"].run(None, {"tokens": ids[:, t : t + 1].numpy(), **state})
        _close(out[0][:, 0], want[:, t])
        state = _state(out, cell, 1)
    for got, w in zip(state.values(), final):
        _close(got, w)
    whole = sess["step"].run(None, {"tokens": ids.numpy(), **{k: np.zeros_like(v) for k, v in state.items()}})
    _close(whole[0], want)


@pytest.mark.parametrize("label_init", [False, True])
@pytest.mark.parametrize("cell", CELLS + SCAN_CELLS)
def test_conditional_start_and_step_over_100_tokens_equal_pytorch(cell, label_init):
    cfg = ConditionalConfig(vocab_size=9, num_labels=3, cell=cell, layers=2, hidden_size=5, embedding_dim=3,
                            label_dim=2, label_init=label_init, dropout=0.0)
    model, sess = _graphs("conditional", cfg)
    ids = torch.randint(0, 9, (4, 100), generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        want, _ = model(ids, labels)
    state = dict(zip(["h", "c"], sess["start"].run(None, {"labels": labels.numpy()})))
    for t in range(100):
        out = sess["step"].run(None, {"tokens": ids[:, t : t + 1].numpy(), "labels": labels.numpy(), **state})
        _close(out[0][:, 0], want[:, t])
        state = _state(out, cell, 1)


@pytest.mark.parametrize("cell,pool,one_hot", [("lstm", "max", False), ("gru", "last", True), ("rnn", "attention", False),
                                               ("lstm", "mean", False), ("mingru", "max", False),
                                               ("minlstm", "attention", False)])
def test_classifier_forward_over_100_tokens_equals_pytorch(cell, pool, one_hot):
    cfg = ClassifierConfig(vocab_size=11, num_labels=3, cell=cell, layers=2, hidden_size=6, embedding_dim=5,
                           pool=pool, one_hot=one_hot)
    model, sess = _graphs("classifier", cfg)
    ids = torch.randint(0, 11, (5, 100), generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([100, 37, 1, 99, 2])
    with torch.no_grad():
        want = model(ids, lengths)
    _close(sess["forward"].run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})[0], want)


def _tag_batch(n=3, t=100, m=7, seed=4):
    g = torch.Generator().manual_seed(seed)
    return {"words": torch.randint(0, 12, (n, t), generator=g), "lengths": torch.tensor([t, 41, 1][:n]),
            "chars": torch.randint(0, 9, (m, 6), generator=g), "char_lengths": torch.tensor([6, 1, 3, 2, 6, 5, 4][:m]),
            "spelling": torch.randint(0, m, (n, t), generator=g)}


def _viterbi(emissions, length, crf):
    """The best tag path of one sentence from the JSON's CRF scores, in numpy."""
    trans, start, end = (np.array(crf[k]) for k in ("transitions", "start", "end"))
    best, back = start + emissions[0], []
    for t in range(1, length):
        scores = best[:, None] + trans  # (K previous, K next)
        back.append(scores.argmax(0))
        best = scores.max(0) + emissions[t]
    path = [int((best + end).argmax())]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


@pytest.mark.parametrize("cell,chars", [("lstm", 5), ("gru", 0), ("rnn", 5)])
def test_tagger_emissions_and_viterbi_from_the_json_equal_pytorch(tmp_path, cell, chars):
    cfg = TaggerConfig(word_vocab_size=12, char_vocab_size=9, num_tags=4, cell=cell, hidden_size=6, embedding_dim=5,
                       char_embedding_dim=4, char_hidden_size=chars, crf=True)
    torch.manual_seed(0)
    model = build_model("tagger", cfg).eval()
    words = [f"w{i}" for i in range(10)]
    run_file = tmp_path / "tag.safetensors"
    save_checkpoint(run_file, model, TrainConfig(), CharTokenizer("abcdefg"), task="tag",
                    task_state={"words": words, "tags": ["A", "B", "C", "D"]})
    export_checkpoint(run_file, tmp_path / "tag.onnx")
    meta = json.loads((tmp_path / "tag.json").read_text())
    assert meta["tags"] == ["A", "B", "C", "D"] and meta["words"]["tokens"][1:-1] == words
    assert meta["chars"]["pad_id"] == 8 and meta["words"]["pad_id"] == 11
    batch = _tag_batch()
    names = [i.name for i in session(tmp_path / "tag.onnx").get_inputs()]
    got = session(tmp_path / "tag.onnx").run(None, {k: v.numpy() for k, v in batch.items() if k in names})[0]
    with torch.no_grad():
        want = model(*batch.values())
        mask = torch.arange(100) < batch["lengths"][:, None]
        paths, _ = model.crf.viterbi(want, mask)
    _close(got, want)
    for i, n in enumerate(batch["lengths"].tolist()):
        assert _viterbi(got[i], n, meta["crf"]) == paths[i, :n].tolist()


@pytest.mark.parametrize("cell,attention,feeding", [("lstm", "general", True), ("gru", "additive", True),
                                                    ("rnn", "dot", False), ("lstm", "none", False),
                                                    ("mingru", "general", True), ("minlstm", "dot", False)])
def test_seq2seq_encoder_and_decoder_step_over_100_tokens_equal_pytorch(cell, attention, feeding):
    cfg = Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=8, cell=cell, layers=2, hidden_size=6, embedding_dim=5,
                        attention=attention, bidirectional=attention != "dot", input_feeding=feeding)
    model, sess = _graphs("seq2seq", cfg)
    g = torch.Generator().manual_seed(5)
    src, src_len = torch.randint(0, 9, (3, 100), generator=g), torch.tensor([100, 13, 1])
    tgt = torch.randint(0, 8, (3, 100), generator=g)
    with torch.no_grad():
        want = model(src, src_len, tgt)  # (3, 100, V), teacher forced
    enc_names = [o.name for o in sess["encoder"].get_outputs()]
    enc = dict(zip(enc_names, sess["encoder"].run(None, {"src": src.numpy(), "src_len": src_len.numpy()})))
    dec_inputs = [i.name for i in sess["decoder"].get_inputs()]
    feeds = {k: v for k, v in {**enc, "src_len": src_len.numpy(), "feed": np.zeros((3, 6), np.float32)}.items()
             if k in dec_inputs}
    out_names = [o.name for o in sess["decoder"].get_outputs()]
    for t in range(100):
        out = dict(zip(out_names, sess["decoder"].run(None, {**feeds, "tokens": tgt[:, t].numpy()})))
        _close(out["logits"], want[:, t])
        feeds.update({k: out[k + "_out"] for k in ("h", "c", "feed") if k in feeds})


# --------------------------------------------------------------------------- whole runs and their JSON


def _save(tmp_path, kind, config, tokenizer, task, task_state=None):
    torch.manual_seed(0)
    model = build_model(kind, config)
    path = tmp_path / f"{kind}.safetensors"
    save_checkpoint(path, model, TrainConfig(), tokenizer, task=task, task_state=task_state)
    return path


def _encode_chars(meta_tok, text):
    index = {t: i for i, t in enumerate(meta_tok["tokens"]) if t is not None}
    return [index.get(ch, meta_tok["unk_id"]) for ch in text]


def _decode_tokens(meta_tok, ids, sep=""):
    return sep.join(meta_tok["tokens"][i] if meta_tok["tokens"][i] is not None else "\ufffd" for i in ids)


def test_a_char_lm_greedy_sample_through_onnxruntime_and_the_json_equals_charrnns(tmp_path):
    tok = CharTokenizer.train(TEXT)
    path = _save(tmp_path, "lm", ModelConfig(vocab_size=tok.vocab_size, cell="gru", layers=2, hidden_size=7,
                                            embedding_dim=5), tok, "lm")
    export_checkpoint(path, tmp_path / "lm.onnx")
    meta = json.loads((tmp_path / "lm.json").read_text())
    prime = "the c"
    ids = _encode_chars(meta["tokenizer"], prime)
    assert ids == tok.encode(prime).tolist()
    sess = session(tmp_path / meta["graphs"]["step"]["file"])
    state = {"h": np.zeros((2, 1, 7), np.float32)}
    out = sess.run(None, {"tokens": np.array([ids[:-1]]), **state})  # the prime in one call
    state, token, made = {"h": out[1]}, ids[-1], []
    for _ in range(30):
        logits, h = sess.run(None, {"tokens": np.array([[token]]), **state})
        logits = logits[0, -1].copy()
        logits[meta["special_ids"]["banned_ids"]] = -np.inf
        token = int(logits.argmax())
        made.append(token)
        state = {"h": h}
    want = charrnn.load(path, device="cpu").generate(prime, greedy=True, length=30)
    assert _decode_tokens(meta["tokenizer"], made) == want


@pytest.mark.parametrize("reverse", [False, True], ids=["left-to-right", "right-to-left"])
def test_seq2seq_greedy_decoding_through_onnxruntime_equals_charrnns(tmp_path, reverse):
    src_tok, tgt_tok = CharTokenizer.train("абвгдежз"), SymbolTokenizer.train("a b v g d e zh z")
    cfg = Seq2SeqConfig(src_vocab_size=src_tok.vocab_size + 1, tgt_vocab_size=tgt_tok.vocab_size + 3, cell="lstm",
                        hidden_size=6, embedding_dim=5)
    path = _save(tmp_path, "seq2seq", cfg, PairTokenizer(src_tok, tgt_tok), "seq2seq",
                 {"length_ratio": 1.5, "reverse_target": reverse})
    export_checkpoint(path, tmp_path / "g2p.onnx")
    meta = json.loads((tmp_path / "g2p.json").read_text())
    assert {"encoder", "decoder"} == set(meta["graphs"]) and meta["graphs"]["decoder"]["file"] == "g2p.decoder.onnx"
    sp = meta["special_ids"]
    assert meta["reverse_target"] is reverse
    enc, dec = session(tmp_path / "g2p.onnx"), session(tmp_path / "g2p.decoder.onnx")
    sources = ["абв", "жз", "гдеабвгде"]
    want = [o[0][0] for o in charrnn.load(path, device="cpu").predict(sources)]
    for source, expected in zip(sources, want):
        src = _encode_chars(meta["source"], source)
        memory, keys, h, c = enc.run(None, {"src": np.array([src]), "src_len": np.array([len(src)])})
        feeds = {"h": h, "c": c, "feed": np.zeros((1, 6), np.float32), "memory": memory, "keys": keys,
                 "src_len": np.array([len(src)])}
        token, out = sp["sos_id"], []
        for _ in range(int(len(src) * meta["length_ratio"]) + meta["length_extra"]):
            logits, feeds["h"], feeds["c"], feeds["feed"], _ = dec.run(None, {**feeds, "tokens": np.array([token])})
            logits[0, sp["banned_ids"]] = -np.inf
            token = int(logits[0].argmax())
            if token == sp["eos_id"]:
                break
            out.append(token)
        if meta["reverse_target"]:  # a right-to-left decoder's tokens, put back in reading order
            out.reverse()
        assert _decode_tokens(meta["target"], out, sep=" ") == expected


def test_a_subword_tokenizer_is_written_as_a_sentencepiece_model_the_json_explains(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    from charrnn.text.sentencepiece import SentencePieceTokenizer

    tok = SentencePieceTokenizer.train("bpe", TEXT * 20, 280)
    cfg = ClassifierConfig(vocab_size=tok.vocab_size, num_labels=2, hidden_size=4, embedding_dim=3)
    path = _save(tmp_path, "classifier", cfg, tok, "classify", {"labels": ["no", "yes"]})
    files = export_checkpoint(path, tmp_path / "clf.onnx").files
    assert {f.name for f in files} == {"clf.onnx", "clf.json", "clf.spm.model"}
    meta = json.loads((tmp_path / "clf.json").read_text())
    t = meta["tokenizer"]
    assert meta["labels"] == ["no", "yes"] and t["model_file"] == "clf.spm.model"
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / t["model_file"]))
    text = " the cat sat"  # as a classifier sees one line: one space before it
    ids = sp.encode(text)
    assert ids == tok.encode(text).tolist()
    raw = b"".join(bytes([int(p[3:5], 16)]) if p.startswith("<0x") else p.encode() for p in (t["pieces"][i] for i in ids))
    assert raw.decode().replace("\u2581", " ") == text


# --------------------------------------------------------------------------- the command


@pytest.fixture
def lm_run(tmp_path):
    tok = CharTokenizer.train(TEXT)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = ModelConfig(vocab_size=tok.vocab_size, cell="lstm", layers=1, hidden_size=3, embedding_dim=2)
    torch.manual_seed(0)
    save_checkpoint(run_dir / "best.safetensors", build_model("lm", cfg), TrainConfig(), tok)
    return run_dir


def test_export_writes_the_graph_and_json_and_lists_them(capsys, lm_run, tmp_path):
    code, out, err = run(capsys, "export", lm_run, "-o", tmp_path / "out" / "m.onnx")
    assert code == 0, err
    assert out.split() == [str(tmp_path / "out" / "m.onnx"), str(tmp_path / "out" / "m.json")]
    assert "checked by onnxruntime" in err
    meta = json.loads((tmp_path / "out" / "m.json").read_text())
    assert meta["format"] == "charrnn-onnx" and meta["task"] == "lm" and meta["verified"]["max_abs_diff"] < TOL
    assert [p["name"] for p in meta["graphs"]["step"]["inputs"]] == ["tokens", "h", "c"]
    assert [p["name"] for p in meta["graphs"]["step"]["outputs"]] == ["logits", "h_out", "c_out"]
    assert _decode_tokens(meta["tokenizer"], _encode_chars(meta["tokenizer"], TEXT)) == TEXT
    code, out, _ = run(capsys, "export", lm_run, "--json")  # default: model.onnx in the run directory
    assert code == 0 and json.loads(out)["graphs"] == {"step": str(lm_run / "model.onnx")}
    assert not list(tmp_path.rglob("*.tmp"))


def test_export_errors_are_one_line_and_write_nothing(capsys, lm_run, tmp_path, monkeypatch):
    assert_one_line_error(*run(capsys, "export", tmp_path / "missing", "-o", tmp_path / "x.onnx"), "no such checkpoint")
    code, out, err = run(capsys, "export", lm_run, "-o", tmp_path / "x.txt")
    assert code == 2
    assert_one_line_error(code, out, err, "must end in .onnx")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(*run(capsys, "export", lm_run, "-o", blocker / "m.onnx"), "cannot write")
    monkeypatch.setattr("charrnn.export.TOLERANCE", -1.0)  # every graph now "differs"
    assert_one_line_error(*run(capsys, "export", lm_run, "-o", tmp_path / "y.onnx"), "differs from PyTorch")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    assert_one_line_error(*run(capsys, "export", lm_run, "-o", tmp_path / "z.onnx"), "pip install 'charrnn[onnx]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "run"]
    assert sorted(p.name for p in lm_run.iterdir()) == ["best.safetensors"]
