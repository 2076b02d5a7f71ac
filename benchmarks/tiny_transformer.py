"""A compact decoder-only Transformer language model (GPT-2 layout) for the benchmarks.

Token and learned position embeddings -> L pre-LayerNorm blocks (causal multi-head
self-attention through ``F.scaled_dot_product_attention(is_causal=True)``, then a 4x GELU
MLP, each added to the residual stream) -> final LayerNorm -> output layer tied to the
token embedding. Dropout on the embeddings, the attention weights and both residual
branches. Weights start at N(0, 0.02), the two residual output projections of each block
at N(0, 0.02 / sqrt(2 L)) as GPT-2 describes.

``make_optimizer`` is AdamW with weight decay on the 2-D weights only (not on biases or
LayerNorm gains); ``lr_at`` is a linear warmup followed by a cosine decay to a fraction
(10% by default) of the peak over the planned steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.ln_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp_in = nn.Linear(d_model, 4 * d_model)
        self.mlp_out = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        # (N, T, 3D) -> three (N, heads, T, D / heads)
        q, k, v = self.qkv(self.ln_attn(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        x = x + self.drop(self.attn_out(a.transpose(1, 2).reshape(n, t, d)))
        return x + self.drop(self.mlp_out(F.gelu(self.mlp_in(self.ln_mlp(x)))))


class TinyTransformer(nn.Module):
    """ids (N, T <= context) -> logits (N, T, vocab)."""

    def __init__(self, vocab: int, layers: int, d_model: int, context: int, heads: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        heads = heads or max(1, d_model // 64)  # GPT-2's 64-wide heads where the width allows
        self.context = context
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("attn_out.weight", "mlp_out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.context:
            raise ValueError(f"{t} tokens is more than the context of {self.context}")
        x = self.drop(self.tok(ids) + self.pos(torch.arange(t, device=ids.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # the tied matrix once


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                   betas: tuple[float, float] = (0.9, 0.99)) -> torch.optim.AdamW:
    """AdamW; weight decay on the 2-D weights (matrices and embeddings) only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def lr_at(step: int, peak: float, warmup: int, planned: int, min_ratio: float = 0.1) -> float:
    """Learning rate of ``step`` (0-based): linear warmup over ``warmup`` steps, then a
    cosine decay from ``peak`` to ``peak * min_ratio`` at step ``planned`` (held after)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, planned - warmup))
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
