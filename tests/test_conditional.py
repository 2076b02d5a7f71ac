"""The label-conditioned generator (models/conditional.py), its task (tasks/conditional.py)
and its decoding (decoding/conditional.py): against hand-built references, padding, the
decoding step against the forward pass, the label's effect on what is generated, exact
resume and two processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from charrnn.api import ConditionalModel
from charrnn.checkpoint import RunDirectory, load_checkpoint, read_metrics
from charrnn.config import SampleConfig, TrainConfig
from charrnn.task_configs import ConditionalConfig
from charrnn.decoding.conditional import ConditionalStep, draw, generate, start
from charrnn.errors import ConfigError, CorpusError, TrainingInterrupted
from charrnn.models import build_model, model_kind
from charrnn.models.conditional import ConditionalGenerator
from charrnn.tasks.conditional import ConditionalTask, prepare_conditional, sequence_nll, text_hash, text_hashes
from charrnn.training import Trainer
from conftest import CELLS

# Small, all-different sizes: V 11, labels 3, E 5, D 2, H 7, L 2.
SIZES = dict(vocab_size=11, num_labels=3, embedding_dim=5, label_dim=2, hidden_size=7, layers=2, dropout=0.0)
RNN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def model(cell="lstm", label_init=True, seed=0, **kw) -> ConditionalGenerator:
    torch.manual_seed(seed)
    m = ConditionalGenerator(ConditionalConfig(cell=cell, label_init=label_init, **{**SIZES, **kw}))
    return m.eval()


def batch(n=3, t=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 8, (n, t), generator=g), torch.randint(0, 3, (n,), generator=g)


# ----------------------------------------------------------------- the model


@pytest.mark.parametrize("label_init", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_equals_a_hand_built_rnn_over_token_and_label_embeddings(cell, label_init):
    m = model(cell, label_init)
    ids, labels = batch()
    c = m.config
    x = torch.cat([m.embedding.weight[ids], m.label_embedding.weight[labels].unsqueeze(1).expand(-1, ids.shape[1], -1)],
                  dim=-1)  # (N, T, E + D)
    ref = RNN[cell](c.embedding_dim + c.label_dim, c.hidden_size, c.layers, batch_first=True)
    ref.load_state_dict(m.rnn.state_dict())
    lab = m.label_embedding.weight[labels]  # (N, D)
    if label_init:  # layer k's h0 is slice k of tanh(W l + b)
        h0 = torch.tanh(lab @ m.init.weight.T + m.init.bias).view(3, c.layers, c.hidden_size).transpose(0, 1)
    else:
        h0 = torch.zeros(c.layers, 3, c.hidden_size)
    h0 = h0.contiguous()
    out, _ = ref(x, (h0, torch.zeros_like(h0)) if cell == "lstm" else h0)
    expected = out @ m.decoder.weight.T + m.decoder.bias  # (N, T, V)
    with torch.no_grad():
        logits, _ = m(ids, labels)
    assert logits.shape == (3, 6, 11) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_padding_never_changes_a_result(cell):
    m = model(cell)
    seqs = [[1, 2, 3, 4, 5], [6, 7], [3, 3, 3, 1]]
    labels = torch.tensor([0, 2, 1])
    ids = torch.full((3, 5), 9)  # the padding holds another token: it must not matter
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
    with torch.no_grad():
        together, _ = m(ids, labels)
        for r, s in enumerate(seqs):
            alone, _ = m(torch.tensor([s]), labels[r : r + 1])
            torch.testing.assert_close(together[r, : len(s)], alone[0], rtol=0, atol=1e-6)
    # The task's loss ignores the padding too: the NLL of a padded batch is the sum of the rows'.
    wrapped = [[8, *s, 10] for s in seqs]  # SOS = 9 - 1 ... here any ids: pad is 8 (V - 3)
    total, count, _ = sequence_nll(m, wrapped, labels.tolist(), torch.device("cpu"))
    parts = [sequence_nll(m, [w], [int(lab)], torch.device("cpu")) for w, lab in zip(wrapped, labels)]
    assert count == sum(p[1] for p in parts)
    assert total == pytest.approx(sum(p[0] for p in parts), abs=1e-4)


@pytest.mark.parametrize("label_init", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_the_decoding_step_gives_the_forward_logits_at_every_position(cell, label_init):
    m = model(cell, label_init)
    ids, _ = batch(1, 7)
    with torch.no_grad():
        full, _ = m(ids, torch.tensor([2]))  # (1, T, V)
        step, first = start(m, 2, rows=3, prime=[])  # three rows, all the same
        assert first == m.config.sos_id
        for t in range(ids.shape[1]):
            logits = step.step(ids[0, t].repeat(3))
            for r in range(3):
                torch.testing.assert_close(logits[r], full[0, t], rtol=0, atol=1e-5)
        # After SOS and a prime read in one forward pass, the step continues where the forward is.
        prime = ids[0, 1:4].tolist()
        primed, _ = m(torch.tensor([[m.config.sos_id, *prime]]), torch.tensor([2]))
        step, first = start(m, 2, rows=2, prime=prime)
        assert first == prime[-1]
        torch.testing.assert_close(step.step(torch.tensor([first, first]))[1], primed[0, -1], rtol=0, atol=1e-5)


def test_reorder_moves_each_rows_label_and_state():
    m = model("gru")
    lab = m.label_embedding(torch.tensor([0, 1, 2]))
    step = ConditionalStep(m, lab, m.initial_state(lab))
    with torch.no_grad():
        before = step.step(torch.tensor([1, 1, 1])).clone()
        step2 = ConditionalStep(m, lab, m.initial_state(lab))
        step2.reorder(torch.tensor([2, 2, 0]))
        after = step2.step(torch.tensor([1, 1, 1]))
    torch.testing.assert_close(after, before[[2, 2, 0]])


def test_config_checks_and_tied_weights():
    with pytest.raises(ConfigError, match="tie_weights"):
        ConditionalConfig(embedding_dim=5, hidden_size=7, tie_weights=True)
    with pytest.raises(ConfigError, match="label_dim"):
        ConditionalConfig(label_dim=0)
    m = model(embedding_dim=7, tie_weights=True)
    assert m.decoder.weight is m.embedding.weight
    c = m.config
    assert (c.pad_id, c.sos_id, c.eos_id) == (8, 9, 10)
    assert model_kind(m) == "conditional" and type(build_model("conditional", c)) is ConditionalGenerator


# ----------------------------------------------------------------- decoding


@pytest.mark.parametrize("cell", CELLS)
def test_a_beam_of_one_equals_greedy_and_outputs_never_hold_specials(cell):
    m = model(cell)
    make = lambda: _Det()  # noqa: E731
    greedy = generate(m, 1, SampleConfig(greedy=True), make, limit=9)[0]
    beam = generate(m, 1, SampleConfig(beam=1), make, limit=9)[0]
    assert beam.tokens == greedy.tokens and beam.logprob == pytest.approx(greedy.logprob, abs=1e-5)
    for g in generate(m, 0, SampleConfig(num_samples=20, seed=3, temperature=2.0), make, limit=6):
        assert len(g.tokens) <= 6 and not {8, 9, 10} & set(g.tokens)
        assert (g.finish_reason, len(g.tokens) < 6) in (("end", True), ("length", False))


def test_sampling_is_reproducible_and_row_i_uses_seed_plus_i():
    m = model()
    make = lambda: _Det()  # noqa: E731
    five = generate(m, 2, SampleConfig(num_samples=5, seed=7, temperature=1.5), make, limit=8)
    again = generate(m, 2, SampleConfig(num_samples=5, seed=7, temperature=1.5), make, limit=8)
    assert [g.tokens for g in five] == [g.tokens for g in again]
    third = generate(m, 2, SampleConfig(num_samples=1, seed=9, temperature=1.5), make, limit=8)[0]
    assert third.tokens == five[2].tokens


def test_draw_keeps_drawing_until_enough_pass_and_says_when_the_cap_ran_out():
    m = model()
    make = lambda: _Det()  # noqa: E731
    cfg = SampleConfig(seed=1, temperature=2.0)
    found = draw(m, 0, cfg, make, 6, limit=5, unique=True, accept=lambda text: "a" not in text)
    assert found.complete and len(found.generations) == 6
    texts = [g.text for g in found.generations]
    assert len(set(texts)) == 6 and all("a" not in t for t in texts)
    # Greedy gives one text only: a second unique one is never found.
    capped = draw(m, 0, SampleConfig(greedy=True), make, 3, limit=5, unique=True, max_draws=40)
    assert not capped.complete and len(capped.generations) == 1 and capped.draws == 40


class _Det:
    """Token id i is the letter chr(ord('a') + i)."""

    pending = False

    def feed(self, i: int) -> str:
        return chr(ord("a") + i)

    def flush(self) -> str:
        return ""


# ----------------------------------------------------------------- data and training


def disjoint_data(folder, n=150, seed=0):
    """Label a: words of the letters a-m; label b: words of n-z."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for label, letters in (("a", "abcdefghijklm"), ("b", "nopqrstuvwxyz")):
        words = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 5))) for _ in range(n)}
        (folder / f"{label}.txt").write_text("".join(w + "\n" for w in sorted(words)), encoding="utf-8")
    return folder


TINY = dict(hidden_size=24, embedding_dim=8, label_dim=4, layers=1, dropout=0.0)
BASE = dict(batch_size=16, eval_interval=20, log_interval=5, warmup_steps=5, lr=1e-2, device="cpu", precision="fp32",
            seed=3)


def trainer(run_dir, data_dir, resume=False, task_cls=ConditionalTask, cell="lstm", **kw):
    cfg = TrainConfig(**{**BASE, **kw})
    ck = load_checkpoint(run_dir, latest=True, resume=True) if resume else None
    data = prepare_conditional(data_dir, None, 0.1, cfg.seed, ck.tokenizer if ck else None)
    task = task_cls(data, ConditionalConfig(cell=cell, **{**TINY, "dropout": 0.2}), cfg)
    t = Trainer(task, cfg, RunDirectory(run_dir, resume=resume), resume=ck)
    task.trainer = t
    return t


def test_the_label_decides_the_alphabet_of_what_is_generated(tmp_path):
    data = disjoint_data(tmp_path / "data")
    cfg = TrainConfig(**{**BASE, "max_steps": 300, "lr": 2e-2, "eval_interval": 1000})
    task = ConditionalTask(prepare_conditional(data, None, 0.1, 3), ConditionalConfig(**TINY), cfg)
    Trainer(task, cfg, RunDirectory(tmp_path / "run")).run()
    gen = ConditionalModel(load_checkpoint(tmp_path / "run"), device="cpu")
    assert gen.labels == ["a", "b"]
    for label, letters in (("a", set("abcdefghijklm")), ("b", set("nopqrstuvwxyz"))):
        texts = [g.text for g in gen.sample(label, n=100, seed=1, temperature=0.5)]
        assert all(t and set(t) <= letters for t in texts), (label, texts)
    # The checkpoint knows its training texts: a copy is not novel, a new word is.
    word = (data / "a.txt").read_text().split()[0]
    assert not gen.is_novel(word) and gen.is_novel(word + "zzzz")
    with pytest.raises(ConfigError, match="the labels are: a, b"):
        gen.sample("c")


def test_one_label_and_unknown_validation_labels_are_refused(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.txt").write_text("ab\ncd\nef\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="conditioning needs at least two"):
        prepare_conditional(tmp_path / "one", None, 0.3, 1)
    data = disjoint_data(tmp_path / "two", n=10)
    val = tmp_path / "val.txt"
    val.write_text("__label__c abc\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="'c'"):
        prepare_conditional(data, val, 0.1, 1)


def test_text_hashes_are_stable_sorted_and_stored_as_a_tensor(tmp_path):
    h = text_hashes(["b", "a", "b"])
    assert h.dtype == torch.int64 and h.tolist() == sorted({text_hash("a"), text_hash("b")})
    assert text_hash("Иванов") == text_hash("Иванов") != text_hash("иванов")
    data = disjoint_data(tmp_path / "data", n=20)
    trainer(tmp_path / "run", data, max_steps=2).run()
    stored = load_file(tmp_path / "run" / "best.safetensors")
    assert torch.equal(stored["task.train_hashes"], load_checkpoint(tmp_path / "run").task_tensors["train_hashes"])
    assert "train_hashes" not in load_checkpoint(tmp_path / "run").task_state  # JSON: labels, counts, longest


class StopAfter(ConditionalTask):
    """Asks to stop while computing the loss of step ``stop_at`` (as a signal would)."""

    stop_at = 0

    def loss(self, net, batch, device, dtype):
        if self.trainer.step + 1 == self.stop_at:
            self.trainer.request_stop()
        return super().loss(net, batch, device, dtype)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stop_and_resume_equals_one_run_bitwise(tmp_path, cell):
    data = disjoint_data(tmp_path / "data", n=40)
    wpe = trainer(tmp_path / "probe", data, max_steps=1, cell=cell).task.batches.windows_per_epoch
    total, stop = 2 * wpe + 3, wpe + 2  # the resumed part crosses an epoch boundary
    assert stop % BASE["log_interval"] and stop % BASE["eval_interval"]
    whole = trainer(tmp_path / "whole", data, max_steps=total, cell=cell).run()
    StopAfter.stop_at = stop
    with pytest.raises(TrainingInterrupted):
        trainer(tmp_path / "parts", data, task_cls=StopAfter, max_steps=total, cell=cell).run()
    resumed = trainer(tmp_path / "parts", data, resume=True, max_steps=total, cell=cell).run()
    assert resumed.summary["resumed_from"] == stop and resumed.summary["steps"] == total
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    logs = [[(r["step"], r.get("train_loss"), r.get("val_loss")) for r in read_metrics(tmp_path / run / "metrics.jsonl")
             if r["event"] in ("train", "eval")] for run in ("whole", "parts")]
    assert logs[0] == logs[1]
    assert whole.summary["val_loss"] == resumed.summary["val_loss"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_two_processes_train_as_one_with_the_global_batch(tmp_path):
    """Under DDP each process takes its rows of every global batch (8 rows: 4 each, with
    different token counts; an epoch's last batch is smaller) and scales its summed token
    loss by the whole batch's token count."""
    data = disjoint_data(tmp_path / "data", n=30)
    args = ["train", "--task", "conditional", data, "--hidden-size", "8", "--embedding-dim", "6", "--label-dim", "3",
            "--label-init", "--dropout", "0", "--batch-size", "8", "--precision", "fp32", "--quiet", "--eval-interval",
            "1000", "--device", "cpu", "--max-steps", "6", "--log-interval", "3", "--warmup-steps", "0", "--lr", "0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*extra):
        proc = subprocess.run([sys.executable, "-m", "charrnn", *map(str, args), *map(str, extra)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr

    run("--out", tmp_path / "one", "--threads", "1")
    run("--out", tmp_path / "two", "--nproc", "2")
    one, two = (load_file(tmp_path / r / "latest.safetensors") for r in ("one", "two"))
    diff = max((one[k].double() - two[k].double()).abs().max().item() for k in one if k.startswith("model."))
    assert diff < 1e-5
    ck = load_checkpoint(tmp_path / "one")
    torch.manual_seed(ck.train_config.seed)
    init = ConditionalGenerator(ck.model_config).state_dict()
    assert max((one[f"model.{k}"] - v).abs().max().item() for k, v in init.items()) > 1e-2  # the steps moved it
    logs = [[(r["step"], r["train_loss"]) for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["event"] == "train"]
            for run in ("one", "two")]
    assert [s for s, _ in logs[0]] == [s for s, _ in logs[1]] == [3, 6]
    assert [x for _, x in logs[0]] == pytest.approx([x for _, x in logs[1]], abs=1e-6)


def test_bf16_keeps_logits_in_fp32_and_close_to_fp32():
    from charrnn.runtime import cpu_has_fast_bf16

    if not cpu_has_fast_bf16():
        pytest.skip("this CPU has no native bf16 (charrnn trains in fp32 here)")
    m = model()
    ids, labels = batch()
    with torch.no_grad():
        ref, _ = m(ids, labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = m(ids, labels)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.1
    assert F.log_softmax(low, -1).exp().sum(-1).sub(1).abs().max() < 1e-5
