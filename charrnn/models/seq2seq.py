"""The encoder-decoder (sequence to sequence), built from a Seq2SeqConfig alone.

    source ids (N, S) -> Embedding -> Dropout -> encoder: L layers, one or two directions
                      -> memory (N, S, D), D = H * directions; final h of each layer (L, N, D)
    decoder state     <- the encoder's final h of each layer: copied (one direction), or
                         through a learned bridge tanh(W h + b) (two directions); an LSTM's
                         cell state starts at zero
    each target step t: x_t = [Embedding(y_{t-1}); a_{t-1}]   (input feeding; a_0 = 0)
                        o_t = decoder RNN (L layers)
                        attention over the real source positions -> context c_t (N, D)
                        a_t = tanh(W_c [c_t; o_t])                 the attentional vector (N, H)
                        logits_t = W_out Dropout(a_t)              (float32)

Attention (Luong et al. 2015; Bahdanau et al. 2015), score of source position s:
``dot`` o_t . m_s (one direction only: the sizes must agree); ``general`` o_t . W m_s;
``additive`` v . tanh(W_k m_s + W_q o_t). Scores at padded positions are -inf, so the
weights sum to one over the real positions. With ``--attention none`` the output is
W_out Dropout(o_t) and nothing is fed back.

Padding never changes a result: the encoder is exact over padded batches
(``encoder.run_layers``), attention ignores padded positions, and the decoder is causal,
so target padding comes after everything that counts.

The batched attention ``attend`` takes queries (N, Q, H) against memory (N, S, D): Q is
the target time steps in training, and the beams (or samples) of each source when
decoding, so every source's rows share one copy of its memory.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..task_configs import Seq2SeqConfig
from .cells import State, cell_kind, make_rnn, step_layers
from .encoder import make_layers, padding_mask, run_layers


class Memory(NamedTuple):
    """What the decoder reads from the encoder, per source."""

    values: torch.Tensor  # (N, S, D) the top encoder layer's outputs
    keys: torch.Tensor | None  # (N, S, H) their projection (general, additive), computed once
    mask: torch.Tensor  # (N, S) True at real positions

    def select(self, index: torch.Tensor) -> Memory:
        """The memory of sources ``index`` (e.g. those still being decoded)."""
        keys = None if self.keys is None else self.keys.index_select(0, index)
        return Memory(self.values.index_select(0, index), keys, self.mask.index_select(0, index))


class Seq2Seq(nn.Module):
    """Encoder-decoder: (src (N, S), src_len (N,), tgt_in (N, T)) -> logits (N, T, V_tgt)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        if config.src_vocab_size < 2 or config.tgt_vocab_size < 4:
            raise ValueError("Seq2SeqConfig vocabulary sizes must be set from the tokenizers")
        self.config = config
        c = config
        h = c.hidden_size
        self.directions = 2 if c.bidirectional else 1
        d = h * self.directions
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.embedding_dim)
        self.tgt_embedding = nn.Embedding(c.tgt_vocab_size, c.embedding_dim)
        self.encoder = make_layers(c.cell, c.embedding_dim, h, c.layers, self.directions)
        self.bridge = nn.Linear(d, h) if d != h else None
        self.feeding = c.input_feeding and c.attention != "none"
        self.decoder = make_rnn(c.cell, c.embedding_dim + (h if self.feeding else 0), h, c.layers, c.dropout)
        self.attn_key = nn.Linear(d, h, bias=False) if c.attention in ("general", "additive") else None
        self.attn_query = nn.Linear(h, h) if c.attention == "additive" else None
        self.attn_score = nn.Linear(h, 1, bias=False) if c.attention == "additive" else None
        self.attn_out = nn.Linear(d + h, h, bias=False) if c.attention != "none" else None
        self.drop = nn.Dropout(c.dropout)
        self.generator = nn.Linear(h, c.tgt_vocab_size)
        if c.tie_weights:
            self.generator.weight = self.tgt_embedding.weight

    # ----------------------------------------------------------- encoder

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[Memory, State]:
        """src (N, S), src_len (N,) -> the memory and the decoder's initial state."""
        lengths = _checked_lengths(src, src_len).to(src.device)
        mask = padding_mask(lengths, src.shape[1])  # (N, S)
        src = src.masked_fill(~mask, self.config.src_pad_id)  # whatever the padding held
        x = self.drop(self.src_embedding(src))  # (N, S, E)
        values, finals = run_layers(self.encoder, x, mask, lengths, self.config.dropout, self.training)
        keys = self.attn_key(values) if self.attn_key is not None else None  # (N, S, H)
        h0 = torch.tanh(self.bridge(finals)) if self.bridge is not None else finals  # (L, N, H)
        h0 = h0.contiguous()
        state = cell_kind(self.config.cell).initial(h0)  # an LSTM's c starts at zero
        return Memory(values, keys, mask), state

    # ----------------------------------------------------------- decoder

    def attend(self, memory: Memory, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (N, Q, H) -> the attentional vectors (N, Q, H) and the weights (N, Q, S)."""
        kind = self.config.attention
        if kind == "additive":
            q = self.attn_query(query)  # (N, Q, H)
            scores = self.attn_score(torch.tanh(memory.keys.unsqueeze(1) + q.unsqueeze(2))).squeeze(-1)  # (N, Q, S)
        else:
            keys = memory.values if kind == "dot" else memory.keys  # (N, S, H)
            scores = torch.bmm(query, keys.transpose(1, 2))  # (N, Q, S)
        scores = scores.float().masked_fill(~memory.mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (N, Q, S), zero at padding
        context = torch.bmm(weights.to(memory.values.dtype), memory.values)  # (N, Q, D)
        return torch.tanh(self.attn_out(torch.cat([context, query.to(context.dtype)], dim=-1))), weights

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder outputs (..., H) -> logits (..., V) in float32 (the output layer stays
        fp32 under autocast, so log-probabilities keep full precision)."""
        with torch.autocast(device_type=out.device.type, enabled=False):
            return self.generator(self.drop(out).float())

    def step(self, memory: Memory, state: State, feed: torch.Tensor | None, tokens: torch.Tensor,
             group: int = 1) -> tuple[torch.Tensor, State, torch.Tensor | None, torch.Tensor | None]:
        """One target token for each of N * group rows (row r reads source r // group):
        tokens (R,) -> logits (R, V), the new state, the new fed vector (R, H) and the
        attention weights (R, S) (None without attention)."""
        x = self.drop(self.tgt_embedding(tokens))  # (R, E)
        if self.feeding:
            x = torch.cat([x, feed.to(x.dtype)], dim=-1)  # (R, E + H)
        out, state = self._decoder_step(x, state)  # (R, H)
        if self.attn_out is None:
            return self.logits(out), state, None, None
        n = memory.values.shape[0]
        att, weights = self.attend(memory, out.view(n, group, -1))  # (N, group, H), (N, group, S)
        att = att.reshape(n * group, -1)  # (R, H)
        return self.logits(att), state, att if self.feeding else None, weights.view(n * group, -1)

    def _decoder_step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step of the decoder's layers: x (R, I) -> top output (R, H), new state."""
        return step_layers(self.decoder, self.config.cell, x, state, self.config.dropout, self.training)

    def initial_feed(self, rows: int, like: torch.Tensor) -> torch.Tensor | None:
        """The fed vector before the first target token: zeros (R, H), or None."""
        return like.new_zeros(rows, self.config.hidden_size) if self.feeding else None

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing: float = 1.0) -> torch.Tensor:
        """Logits (N, T, V) of each next target token, the decoder fed ``tgt_in`` (N, T)
        (SOS first). Below 1, ``teacher_forcing`` is the probability that a row is fed the
        gold previous token rather than its own most likely prediction (scheduled
        sampling; the first token is always SOS)."""
        memory, state = self.encode(src, src_len)
        if not self.feeding and teacher_forcing >= 1.0:
            # Nothing depends on the previous step's output: the whole target in one call.
            out, _ = self.decoder(self.drop(self.tgt_embedding(tgt_in)), state)  # (N, T, H)
            if self.attn_out is not None:
                out, _ = self.attend(memory, out)
            return self.logits(out)
        n, t = tgt_in.shape
        feed = self.initial_feed(n, memory.values)
        tokens = tgt_in[:, 0]
        steps = []
        for i in range(t):
            logits, state, feed, _ = self.step(memory, state, feed, tokens)
            steps.append(logits)
            if i + 1 < t:
                tokens = tgt_in[:, i + 1]
                if teacher_forcing < 1.0:
                    own = logits.detach().argmax(dim=-1)
                    gold = torch.rand(n, device=tgt_in.device) < teacher_forcing
                    tokens = torch.where(gold, tokens, own)
        return torch.stack(steps, dim=1)  # (N, T, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _checked_lengths(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """lengths as int64 on the CPU, after checking them against ids (N, S)."""
    if ids.dim() != 2 or ids.shape[0] == 0:
        raise ValueError(f"ids must be a non-empty (N, S) batch, got shape {tuple(ids.shape)}")
    if tuple(lengths.shape) != (ids.shape[0],):
        raise ValueError(f"lengths must have shape ({ids.shape[0]},), got {tuple(lengths.shape)}")
    cpu = lengths.detach().to("cpu", torch.int64)
    low, high = int(cpu.min()), int(cpu.max())
    if low < 1 or high > ids.shape[1]:
        raise ValueError(f"lengths must be between 1 and S={ids.shape[1]}, got {low}..{high}")
    return cpu
