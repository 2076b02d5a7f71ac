import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from charrnn.checkpoint import BEST, FORMAT_VERSION, LATEST, RunDirectory, load_checkpoint, save_checkpoint
from charrnn.config import TrainConfig
from charrnn.errors import CheckpointError, RunExistsError
from charrnn.models.lm import RNNLanguageModel
from charrnn.text.tokenizers import CharTokenizer
from conftest import CELLS, tiny_model_config


def _saved(tmp_path, cell="lstm", **kw):
    tok = CharTokenizer.train("abcdef")
    torch.manual_seed(0)
    model = RNNLanguageModel(tiny_model_config(cell, vocab_size=tok.vocab_size, **kw))
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, TrainConfig(batch_size=3, bptt=5), tok, step=17, metrics={"val_bpc": 1.5})
    return path, model, tok


@pytest.mark.parametrize("cell", CELLS)
def test_round_trip_restores_model_configs_tokenizer_and_metrics(tmp_path, cell):
    path, model, tok = _saved(tmp_path, cell)
    ck = load_checkpoint(path)
    assert ck.model_config == model.config
    assert ck.train_config == TrainConfig(batch_size=3, bptt=5)
    assert ck.tokenizer.chars == tok.chars
    assert ck.step == 17 and ck.metrics == {"val_bpc": 1.5}
    again = ck.build_model()
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(model.eval()(ids)[0], again(ids)[0])


def test_tied_weights_survive_the_round_trip(tmp_path):
    path, model, _ = _saved(tmp_path, hidden_size=3, embedding_dim=3, tie_weights=True)
    again = load_checkpoint(path).build_model()
    assert again.decoder.weight is again.embedding.weight
    assert torch.equal(again.embedding.weight, model.embedding.weight)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path, model, tok = _saved(tmp_path)
    before = path.read_bytes()
    # A failing write (an unsupported tensor) must leave the previous file untouched.
    from charrnn import checkpoint as ckmod

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    orig = ckmod.save_file
    ckmod.save_file = broken
    try:
        with pytest.raises(CheckpointError, match="No space left"):
            save_checkpoint(path, model, TrainConfig(), tok)
    finally:
        ckmod.save_file = orig
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path, _, _ = _saved(tmp_path)
    data = path.read_bytes()
    for cut in (0, 5, 50, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable charrnn checkpoint"):
            load_checkpoint(bad)


def test_text_file_and_foreign_safetensors_are_refused(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("just some text, not a checkpoint\n" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(txt)
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint"):
        load_checkpoint(foreign)


def _rewrite_metadata(path, **changes):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata={**meta, **changes})


def test_newer_format_version_is_refused(tmp_path):
    path, _, _ = _saved(tmp_path)
    _rewrite_metadata(path, format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(path)


def test_damaged_metadata_is_refused(tmp_path):
    path, _, _ = _saved(tmp_path)
    _rewrite_metadata(path, model_config=json.dumps({"hidden_size": 99, "vocab_size": 7}))
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path).build_model()
    _rewrite_metadata(path, tokenizer="{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('ran')",))


def test_a_malicious_pickle_is_refused_without_running(tmp_path):
    evil = tmp_path / "best.safetensors"
    evil.write_bytes(pickle.dumps({"state": _Payload()}))
    run = tmp_path / "run"
    run.mkdir()
    (run / BEST).write_bytes(evil.read_bytes())
    for target in (evil, run):
        with pytest.raises(CheckpointError):
            load_checkpoint(target)
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")
    # Sanity check that the payload is live: unpickling it really would run it.
    pickle.loads(evil.read_bytes())
    assert os.path.exists("PWNED")


def test_run_directory_resolution_and_overwrite(tmp_path):
    run = tmp_path / "run"
    rd = RunDirectory(run)
    path, model, tok = _saved(tmp_path)
    rd.save("latest", model, TrainConfig(), tok, 1, {})
    assert load_checkpoint(run).path.name == LATEST  # no best yet: latest is used
    rd.save("best", model, TrainConfig(), tok, 2, {})
    assert load_checkpoint(run).path.name == BEST
    assert load_checkpoint(run, latest=True).step == 1
    with pytest.raises(RunExistsError):
        RunDirectory(run)
    RunDirectory(run, overwrite=True)
    assert not (run / BEST).exists()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(run)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_checkpoint_saved_on_gpu_loads_on_cpu(tmp_path):
    tok = CharTokenizer.train("abcdef")
    model = RNNLanguageModel(tiny_model_config("lstm", vocab_size=tok.vocab_size)).cuda()
    save_checkpoint(tmp_path / "g.safetensors", model, TrainConfig(device="cuda"), tok)
    again = load_checkpoint(tmp_path / "g.safetensors").build_model("cpu")
    assert all(p.device.type == "cpu" for p in again.parameters())
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a.cpu(), b), name  # the weights cross devices bitwise
    ids = torch.tensor([[1, 2, 3]])
    # cuDNN computes in TF32 by default on Ampere and later GPUs (~1e-4 off fp32): compare in fp32.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        on_gpu = model.eval()(ids.cuda())[0].cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert torch.allclose(on_gpu, again(ids)[0], atol=1e-5)


def test_loaded_tensors_are_aligned_like_torch_allocations(tmp_path):
    """safetensors returns tensors at 4-byte offsets of its buffer; on AVX2 CPUs the matrix
    kernels round differently for such inputs, which broke bitwise resume of GRU and RNN
    runs. Every tensor a checkpoint gives back must sit where torch itself would put it."""
    tok = CharTokenizer.train("abcdef")
    model = RNNLanguageModel(tiny_model_config("gru", vocab_size=tok.vocab_size))
    state = ({"x": 1}, {f"t{i}": torch.randn(i + 1, 3) for i in range(7)})  # odd sizes: odd offsets
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, TrainConfig(batch_size=3, bptt=5), tok, step=1, metrics={}, resume=state)
    ck = load_checkpoint(path, resume=True)
    tensors = {**ck.weights, **ck.resume_tensors}
    assert len(tensors) >= 7 + len(model.state_dict())
    for name, t in tensors.items():
        assert t.data_ptr() % 64 == 0, name
    for name, t in state[1].items():
        assert torch.equal(ck.resume_tensors[name], t)


def test_a_checkpoint_of_the_first_release_loads_and_generates_as_it_did():
    """tests/data/release-0.1.0: a GRU run written by charrnn 0.1.0 before tasks and model
    kinds existed (commit 2405bc8), with what that release generated and scored from it."""
    import json
    from pathlib import Path

    import charrnn

    here = Path(__file__).parent / "data" / "release-0.1.0"
    expected = json.loads((here / "expected.json").read_text(encoding="utf-8"))
    ck = load_checkpoint(here / "best.safetensors")
    assert ck.task == "lm" and ck.model_kind == "lm" and ck.task_state is None
    m = charrnn.load(here / "best.safetensors", device="cpu")
    assert m.generate("The ", length=40, greedy=True) == expected["greedy"]
    assert m.generate("The ", length=40, temperature=0.9, seed=7) == expected["sampled"]
    beams = [(g.text, g.logprob) for g in m.sample("The ", beam=3, num_return=2, length=12)]
    assert [t for t, _ in beams] == [t for t, _ in expected["beam"]]
    # The scores are sums of float32 log-probabilities: CPUs with other vector units (AVX2,
    # AVX-512) round the float32 products differently in the last bits (measured 1.5e-9
    # absolute on -36.4 between an AVX2 and an AVX-512 EPYC), so they agree to float32
    # precision, not to the last float64 bit; the texts above are exact everywhere.
    assert [lp for _, lp in beams] == pytest.approx([lp for _, lp in expected["beam"]], rel=1e-6)
    assert m.evaluate("The lazy dog jumps over the quick brown fox. ", streams=1).bpc == pytest.approx(
        expected["bpc"], rel=1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_an_encoder_decoder_round_trips_with_both_tokenizers(tmp_path, shared):
    from charrnn.task_configs import Seq2SeqConfig
    from charrnn.models.seq2seq import Seq2Seq
    from charrnn.text.symbols import PairTokenizer, SymbolTokenizer
    from charrnn.text.tokenizers import load_tokenizer

    src = CharTokenizer.train("abc")
    pair = PairTokenizer(src, src) if shared else PairTokenizer(src, SymbolTokenizer.train("t͡ʃ a k"))
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=src.vocab_size + 1, tgt_vocab_size=pair.target.vocab_size + 3,
                                  hidden_size=4, embedding_dim=3, attention="additive"))
    path = tmp_path / "s2s.safetensors"
    save_checkpoint(path, model, TrainConfig(), pair, step=3, task="seq2seq", task_state={"length_ratio": 1.5})
    ck = load_checkpoint(path)
    assert (ck.task, ck.model_kind, ck.model_config) == ("seq2seq", "seq2seq", model.config)
    assert ck.tokenizer.kind == "pair" and ck.tokenizer.shared == shared
    assert ck.tokenizer.target.decode(ck.tokenizer.target.encode("a t͡ʃ" if not shared else "ab")) == (
        "a t͡ʃ" if not shared else "ab")
    rebuilt = ck.build_model()
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v)
    summary = ck.summary()
    assert summary["source_tokenizer"] == "char" and summary["shared_vocab"] == shared
    assert load_tokenizer(path).kind == "pair"  # a tokenizer file read from it keeps both sides
