"""The encoder-decoder and its decoding against reference computations: a hand-built
step-by-step loop of torch modules, each pair alone vs padded batches, brute-force search."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.config import SampleConfig
from charrnn.task_configs import Seq2SeqConfig
from charrnn.decoding.seq2seq import translate
from charrnn.errors import ConfigError
from charrnn.models.seq2seq import Seq2Seq
from charrnn.text.tokenizer import TextDetokenizer

CELLS = ("lstm", "gru", "rnn")
ATTENTIONS = ("none", "dot", "general", "additive")
CELL_MODULES = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


def make(cell="lstm", attention="general", bidirectional=True, layers=1, feeding=True, src_vocab=9, tgt_vocab=8,
         seed=0, **kw) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(src_vocab_size=src_vocab, tgt_vocab_size=tgt_vocab, cell=cell, attention=attention,
                        bidirectional=bidirectional and attention != "dot", layers=layers, hidden_size=6,
                        embedding_dim=5, input_feeding=feeding, dropout=0.0, **kw)
    return Seq2Seq(cfg).eval()


def every_kind():
    for cell in CELLS:
        for attention in ATTENTIONS:
            yield cell, attention


# --------------------------------------------------------------------------- reference


def reference_logits(model: Seq2Seq, src: list[int], tgt_in: list[int]) -> torch.Tensor:
    """One pair, by hand: torch's bidirectional nn.LSTM/GRU/RNN as the encoder, nn.*Cell
    modules as the decoder, attention as explicit loops over source positions."""
    c = model.config
    x = model.src_embedding(torch.tensor([src]))  # (1, S, E)
    finals = []
    for k, directions in enumerate(model.encoder):
        ref = type(directions[0])(x.shape[-1], c.hidden_size, batch_first=True, bidirectional=len(directions) == 2,
                                  **({"nonlinearity": "tanh"} if c.cell == "rnn" else {}))
        with torch.no_grad():
            for d, suffix in enumerate(["", "_reverse"][: len(directions)]):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(ref, f"{name}_l0{suffix}").copy_(getattr(directions[d], f"{name}_l0"))
        out, state = ref(x)
        h_n = state[0] if isinstance(state, tuple) else state  # (D, 1, H)
        finals.append(torch.cat(list(h_n), dim=-1))  # (1, D*H): forward final, backward final
        x = out
    memory = x[0]  # (S, D)
    h0 = torch.stack(finals)  # (L, 1, D)
    if model.bridge is not None:
        h0 = torch.tanh(model.bridge(h0))
    cells = []
    for k in range(c.layers):
        size = getattr(model.decoder, f"weight_ih_l{k}").shape[1]
        cell = CELL_MODULES[c.cell](size, c.hidden_size)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(model.decoder, f"{name}_l{k}"))
        cells.append(cell)
    h = [h0[k] for k in range(c.layers)]  # (1, H) each
    cs = [torch.zeros_like(v) for v in h]
    feed = torch.zeros(1, c.hidden_size)
    rows = []
    for tok in tgt_in:
        inp = model.tgt_embedding(torch.tensor([tok]))
        if model.feeding:
            inp = torch.cat([inp, feed], dim=-1)
        for k, cell in enumerate(cells):
            if c.cell == "lstm":
                h[k], cs[k] = cell(inp, (h[k], cs[k]))
            else:
                h[k] = cell(inp, h[k])
            inp = h[k]
        o = inp[0]  # (H,)
        if c.attention == "none":
            rows.append(model.generator(o))
            continue
        scores = []
        for m in memory:
            if c.attention == "dot":
                scores.append(torch.dot(o, m))
            elif c.attention == "general":
                scores.append(torch.dot(o, model.attn_key(m)))
            else:
                scores.append(model.attn_score(torch.tanh(model.attn_key(m) + model.attn_query(o)))[0])
        weights = torch.softmax(torch.stack(scores), dim=0)
        context = sum(w * m for w, m in zip(weights, memory))
        att = torch.tanh(model.attn_out(torch.cat([context, o])))
        feed = att.view(1, -1)
        rows.append(model.generator(att))
    return torch.stack(rows)  # (T, V)


@pytest.mark.parametrize("cell, attention", list(every_kind()))
def test_teacher_forced_logits_equal_a_hand_built_loop(cell, attention):
    model = make(cell, attention, layers=2)
    src, tgt_in = [1, 4, 2, 7, 3], [model.config.sos_id, 2, 0, 3]
    with torch.no_grad():
        got = model(torch.tensor([src]), torch.tensor([len(src)]), torch.tensor([tgt_in]))[0]
        want = reference_logits(model, src, tgt_in)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell, attention", list(every_kind()))
def test_a_padded_batch_equals_each_pair_alone(cell, attention):
    model = make(cell, attention, layers=2)
    c = model.config
    pairs = [([1, 2, 3, 4, 5, 6], [c.sos_id, 1, 2]), ([3], [c.sos_id, 4, 4, 4, 0]), ([5, 2], [c.sos_id])]
    s_max, t_max = 6, 5
    src = torch.randint(0, c.src_vocab_size, (3, s_max))  # whatever the padding holds
    tgt = torch.randint(0, c.tgt_vocab_size, (3, t_max))
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(t)] = torch.tensor(t)
    with torch.no_grad():
        batch = model(src, torch.tensor([len(s) for s, _ in pairs]), tgt)
        for i, (s, t) in enumerate(pairs):
            alone = model(torch.tensor([s]), torch.tensor([len(s)]), torch.tensor([t]))[0]
            torch.testing.assert_close(batch[i, : len(t)], alone, atol=1e-5, rtol=1e-4)


def test_label_smoothed_loss_equals_a_hand_computed_sum_and_torchs_own():
    from charrnn.tasks.seq2seq import smoothed_nll

    torch.manual_seed(3)
    pad, sos, eps = 0, 1, 0.2
    logits = torch.randn(2, 4, 6)
    gold = torch.tensor([[2, 5, 3, pad], [4, pad, pad, pad]])
    allowed = torch.tensor([2, 3, 4, 5])  # all but padding and SOS
    got = smoothed_nll(logits, gold, pad, allowed, eps)
    want = 0.0
    for r in range(2):
        for t in range(4):
            if gold[r, t] == pad:
                continue
            logp = torch.log_softmax(logits[r, t].double(), dim=0)
            want += -(1 - eps) * logp[gold[r, t]] - eps * sum(logp[j] for j in allowed) / len(allowed)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    # Where padding and SOS can never win (their logits far below), it is torch's own label
    # smoothing over the allowed tokens alone.
    banned = logits.clone()
    banned[..., [pad, sos]] = -1e4
    remap = {int(a): i for i, a in enumerate(allowed)}
    flat = gold.reshape(-1)
    keep = flat != pad
    ref = F.cross_entropy(banned.reshape(-1, 6)[keep][:, allowed], torch.tensor([remap[int(g)] for g in flat[keep]]),
                          label_smoothing=eps, reduction="sum")
    assert float(smoothed_nll(banned, gold, pad, allowed, eps)) == pytest.approx(float(ref), rel=1e-6)
    # No smoothing: the plain summed negative log-likelihood, padding ignored.
    plain = F.cross_entropy(logits.reshape(-1, 6), flat, ignore_index=pad, reduction="sum")
    assert float(smoothed_nll(logits, gold, pad, allowed, 0.0)) == pytest.approx(float(plain), rel=1e-6)


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_attention_weights_sum_to_one_and_ignore_padding(attention):
    model = make(attention=attention)
    src = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    lengths = torch.tensor([4, 2])
    with torch.no_grad():
        memory, _ = model.encode(src, lengths)
        _, weights = model.attend(memory, torch.randn(2, 3, 6))  # 3 queries per source
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    assert torch.all(weights[1, :, 2:] == 0) and torch.all(weights[1, :, :2] > 0)


def test_scheduled_sampling_feeds_the_models_own_prediction():
    model = make()
    c = model.config
    src, tgt = torch.tensor([[1, 2, 3]]), torch.tensor([[c.sos_id, 1, 1, 1]])
    with torch.no_grad():
        own = model(src, torch.tensor([3]), tgt, teacher_forcing=0.0)[0]
        # By hand: feed SOS, then each step's argmax.
        tokens, rows = [c.sos_id], []
        for _ in range(4):
            logits = model(src, torch.tensor([3]), torch.tensor([tokens]))[0, -1]
            rows.append(logits)
            tokens.append(int(logits.argmax()))
        gold = model(src, torch.tensor([3]), tgt, teacher_forcing=1.0)[0]
    torch.testing.assert_close(own, torch.stack(rows), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(own, gold)


def test_config_refuses_dot_attention_with_a_bidirectional_encoder_and_bad_ties():
    with pytest.raises(ConfigError, match="no-bidirectional"):
        Seq2SeqConfig(attention="dot", bidirectional=True)
    with pytest.raises(ConfigError, match="embedding_dim == hidden_size"):
        Seq2SeqConfig(tie_weights=True, embedding_dim=8, hidden_size=16)
    with pytest.raises(ConfigError, match="attention must be"):
        Seq2SeqConfig(attention="luong")


def test_a_stored_config_without_attention_keeps_the_old_default():
    """Additive attention is the default now; a stored config that names no attention kind
    was written when general was, and is rebuilt with general; one that names it keeps it."""
    from charrnn.config import from_dict

    assert Seq2SeqConfig().attention == "additive"
    old = {"src_vocab_size": 9, "tgt_vocab_size": 8, "hidden_size": 16}
    assert from_dict(Seq2SeqConfig, old).attention == "general"
    assert from_dict(Seq2SeqConfig, {**old, "attention": "additive"}).attention == "additive"
    assert from_dict(Seq2SeqConfig, {**old, "attention": "dot", "bidirectional": False}).attention == "dot"


def test_tied_weights_share_the_target_embedding():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=6, hidden_size=4, embedding_dim=4,
                                  tie_weights=True))
    assert model.generator.weight is model.tgt_embedding.weight


# --------------------------------------------------------------------------- decoding


def decode(model, sources, **cfg):
    outs = translate(model, sources, SampleConfig(**cfg), lambda: _Ids(), limit=lambda n: 4)
    return outs


def _Ids() -> TextDetokenizer:
    """A detokenizer that writes ids as letters (a=0, b=1, ...)."""
    return TextDetokenizer(lambda i: chr(ord("a") + i))


def teacher_forced_logprob(model, src: list[int], out: list[int], ended: bool) -> float:
    c = model.config
    target = out + ([c.eos_id] if ended else [])
    with torch.no_grad():
        logits = model(torch.tensor([src]), torch.tensor([len(src)]), torch.tensor([[c.sos_id] + target[:-1]]))[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        return float(sum(logp[i, t] for i, t in enumerate(target))) if target else 0.0


SOURCES = [[1, 2, 3], [4], [2, 2, 5, 6, 7], [3, 1]]


@pytest.mark.parametrize("cell, attention", [("lstm", "general"), ("gru", "additive"), ("rnn", "none")])
def test_beam_of_width_one_equals_greedy(cell, attention):
    model = make(cell, attention, seed=3)
    greedy = decode(model, SOURCES, greedy=True)
    beam = decode(model, SOURCES, beam=1, length_penalty=0.0)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]
    for g, b in zip(greedy, beam):
        assert g[0].finish_reason == b[0].finish_reason
        assert g[0].logprob == pytest.approx(b[0].logprob, abs=1e-5)


def test_batched_decoding_equals_one_source_at_a_time():
    model = make(seed=4)
    for cfg in ({"greedy": True}, {"beam": 3, "num_return": 3}):
        together = decode(model, SOURCES, **cfg)
        for src, outs in zip(SOURCES, together):
            alone = decode(model, [src], **cfg)[0]
            assert [g.tokens for g in outs] == [g.tokens for g in alone]
            assert [g.logprob for g in outs] == pytest.approx([g.logprob for g in alone], abs=1e-5)


def brute_force(model, src: list[int], limit: int) -> list[tuple[float, list[int], bool]]:
    """Every output decoding can produce within ``limit`` tokens: y + EOS with len(y) < limit,
    and y of exactly ``limit`` tokens (cut at the limit), with its log-probability."""
    c = model.config
    symbols = [t for t in range(c.tgt_vocab_size) if t not in (c.tgt_pad_id, c.sos_id, c.eos_id)]
    found = []
    for n in range(limit + 1):
        for y in itertools.product(symbols, repeat=n):
            ended = n < limit
            found.append((teacher_forced_logprob(model, src, list(y), ended), list(y), ended))
    return sorted(found, key=lambda f: f[0], reverse=True)


@pytest.mark.parametrize("cell", CELLS)
def test_the_widest_beam_finds_the_brute_force_best_and_its_n_best_scores_are_log_probabilities(cell):
    # Target vocabulary: 2 symbols + padding, SOS, EOS; outputs of at most 3 symbols.
    model = make(cell, "general", tgt_vocab=5, seed=7)
    src = [3, 1, 4]
    want = brute_force(model, src, 3)
    outs = translate(model, [src], SampleConfig(beam=16, num_return=5, length_penalty=0.0), lambda: _Ids(),
                     limit=lambda n: 3)[0]
    assert [g.tokens for g in outs] == [w[1] for w in want[:5]]
    for g, (lp, toks, ended) in zip(outs, want):
        assert g.finish_reason == ("end" if ended else "length")
        assert g.logprob == pytest.approx(lp, abs=1e-6)
        assert g.score == pytest.approx(lp, abs=1e-6)  # no length penalty: the score is the log-probability


def test_n_best_scores_with_a_length_penalty_are_log_probabilities_over_length():
    model = make(seed=11)
    outs = translate(model, SOURCES, SampleConfig(beam=4, num_return=4, length_penalty=1.0), lambda: _Ids(),
                     limit=lambda n: 4)
    for src, gens in zip(SOURCES, outs):
        assert len(gens) == 4
        scores = [g.score for g in gens]
        assert scores == sorted(scores, reverse=True)
        for g in gens:
            ended = g.finish_reason == "end"
            lp = teacher_forced_logprob(model, src, g.tokens, ended)
            assert g.logprob == pytest.approx(lp, abs=1e-6)
            assert g.score == pytest.approx(lp / (len(g.tokens) + ended), abs=1e-6)


def test_outputs_end_at_eos_or_the_limit_and_never_contain_specials():
    model = make(seed=5)
    c = model.config
    for cfg in ({"greedy": True}, {"beam": 3}, {"num_samples": 3, "seed": 1}):
        for gens in translate(model, SOURCES, SampleConfig(**cfg), lambda: _Ids(), limit=lambda n: n + 1):
            for g in gens:
                assert not {c.tgt_pad_id, c.sos_id, c.eos_id} & set(g.tokens)
                assert g.finish_reason in ("end", "length")
                assert g.text == "".join(chr(ord("a") + t) for t in g.tokens)


def test_sampling_is_reproducible_per_seed_and_row():
    model = make(seed=6)
    a = translate(model, SOURCES, SampleConfig(num_samples=2, seed=3, temperature=1.5), lambda: _Ids(),
                  limit=lambda n: 5)
    b = translate(model, SOURCES, SampleConfig(num_samples=2, seed=3, temperature=1.5), lambda: _Ids(),
                  limit=lambda n: 5)
    assert [[g.tokens for g in x] for x in a] == [[g.tokens for g in x] for x in b]
    for src, gens in zip(SOURCES, a):
        for g in gens:
            assert g.logprob == pytest.approx(teacher_forced_logprob(model, src, g.tokens, g.finish_reason == "end"),
                                              abs=1e-5)


def test_bf16_autocast_keeps_logits_in_fp32_and_close_to_fp32():
    from charrnn.runtime import autocast, cpu_has_fast_bf16

    if not cpu_has_fast_bf16():
        pytest.skip("this CPU has no native bf16 (charrnn trains in fp32 here)")
    model = make(seed=2)
    src, tgt = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[model.config.sos_id, 1, 2]])
    with torch.no_grad():
        full = model(src, torch.tensor([4]), tgt)
        with autocast(torch.device("cpu"), torch.bfloat16):
            half = model(src, torch.tensor([4]), tgt)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=0.05, rtol=0.05)


def test_an_ensemble_decodes_with_the_mean_of_the_models_probabilities():
    from charrnn.decoding.seq2seq import EnsembleStep, Seq2SeqStep

    a, b = make(seed=1), make(seed=2)
    src, lengths = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    tokens = torch.tensor([a.config.sos_id] * 2)
    with torch.no_grad():
        steps = [Seq2SeqStep(m, *m.encode(src, lengths), group=1) for m in (a, b)]
        got = EnsembleStep(steps).step(tokens)
        probs = [torch.softmax(Seq2SeqStep(m, *m.encode(src, lengths), group=1).step(tokens), -1) for m in (a, b)]
    torch.testing.assert_close(got.exp(), (probs[0] + probs[1]) / 2)
    # A model with itself decodes as the model alone; two models decode as neither alone.
    alone = decode(a, SOURCES, beam=3, num_return=3)
    twice = translate([a, a], SOURCES, SampleConfig(beam=3, num_return=3), _Ids, limit=lambda n: 4)
    assert [[g.tokens for g in x] for x in alone] == [[g.tokens for g in x] for x in twice]
    assert [g.logprob for x in alone for g in x] == pytest.approx([g.logprob for x in twice for g in x], abs=1e-5)
    with pytest.raises(ValueError, match="same source and target"):
        translate([a, make(tgt_vocab=9)], SOURCES, SampleConfig(greedy=True), _Ids)


def test_an_ensemble_of_runs_with_other_tokenizers_is_refused(tmp_path):
    from charrnn.api import load_ensemble
    from charrnn.checkpoint import save_checkpoint
    from charrnn.config import TrainConfig
    from charrnn.errors import CheckpointError
    from charrnn.text.char import CharTokenizer
    from charrnn.text.symbols import PairTokenizer

    paths = []
    for i, chars in enumerate(("abcdefg", "abcdefh")):
        tok = CharTokenizer.train(chars)
        pair = PairTokenizer(tok, CharTokenizer.train("xyzw"))
        model = make(src_vocab=tok.vocab_size + 1, tgt_vocab=pair.target.vocab_size + 3, seed=i)
        paths.append(tmp_path / f"r{i}.safetensors")
        save_checkpoint(paths[-1], model, TrainConfig(), pair, task="seq2seq", task_state={"length_ratio": 1.0})
    assert len(load_ensemble([paths[0], paths[0]]).models) == 2
    with pytest.raises(CheckpointError, match="tokenizers differ"):
        load_ensemble(paths)
