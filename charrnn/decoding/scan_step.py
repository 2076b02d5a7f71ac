"""The decoding step of a language model whose cell is trained by a parallel scan (mingru,
minlstm: models/minrnn.py), for ``step.StepRunner``.

At inference the cell is its recurrence h = a * h + b with a and b read from the layer's
input alone, so nothing about the first layer's cell depends on the past: for each token
the first block's residual input and its gate pre-activations are looked up from a table
made once (``V x (H + G*H)``), and a step reads only the weights of the feed-forward
layers, the layers above the first, and the output layer. Everything else is written out
on preallocated buffers (one row: matrix-vector products), the same arithmetic as
``ScanStack.step`` (tests: the logits agree to float32 rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TABLE_MAX = 1 << 22  # the most floats (16 MB) the first layer's table may take


class ScanStep:
    """The step's arithmetic for ``model`` (an RNNLanguageModel of a scan cell): call
    ``start(n)`` for n rows, then ``step(tokens, h, out)`` with the state h (L, n, H),
    updated in place, and the logits written into ``out`` (n, V)."""

    def __init__(self, model):
        stack = model.rnn
        self.variant, self.layers, self.hidden = stack.variant, stack.num_layers, stack.hidden_size
        detach = lambda t: t.detach().float()  # noqa: E731
        self.blocks = []
        for block in stack.blocks:
            parts = {"n1": (detach(block.norm1.weight), detach(block.norm1.bias), block.norm1.eps),
                     "wg": detach(block.gates.weight), "bg": detach(block.gates.bias), "ffn": block.ffn_mult}
            if block.ffn_mult:
                parts.update(n2=(detach(block.norm2.weight), detach(block.norm2.bias), block.norm2.eps),
                             wu=detach(block.up.weight), bu=detach(block.up.bias),
                             wd=detach(block.down.weight), bd=detach(block.down.bias))
            self.blocks.append(parts)
        self.norm = (detach(stack.norm.weight), detach(stack.norm.bias), stack.norm.eps)
        self.dec_w, self.dec_b = detach(model.decoder.weight), detach(model.decoder.bias)
        with torch.no_grad():  # the first block's input and gates, per token
            x0 = model.embedding.weight.detach().float()
            if stack.proj is not None:
                x0 = F.linear(x0, detach(stack.proj.weight), detach(stack.proj.bias))
            first = self.blocks[0]
            self.table = None
            if x0.shape[0] * (x0.shape[1] + first["wg"].shape[0]) <= TABLE_MAX:
                gates = F.linear(F.layer_norm(x0, (self.hidden,), *first["n1"]), first["wg"], first["bg"])
                self.table = torch.cat([x0, gates], 1).contiguous()  # (V, H + G*H)
            else:
                self.x0 = x0.contiguous()
        self.n = 0

    def start(self, n: int) -> None:
        H, G, dev = self.hidden, self.blocks[0]["wg"].shape[0], self.dec_w.device
        self.n = n
        self.row = torch.empty(n, H + G, device=dev)  # [x | gates]: the table's row, or the layer's
        self.x, self.g = self.row[:, :H], self.row[:, H:]
        self.u = torch.empty(n, H, device=dev)  # normalised input of a product
        widest = max((b["wu"].shape[0] for b in self.blocks if b["ffn"]), default=1)
        self.f = torch.empty(n, widest, device=dev)

    def _gates(self, h: torch.Tensor) -> None:
        """h = a * h + b from the gate pre-activations in ``self.g`` (in place)."""
        if self.variant == "gru":
            k, pre = self.g.chunk(2, dim=1)
            z = k.sigmoid_()
        else:
            f, i, pre = self.g.chunk(3, dim=1)
            f.sigmoid_()
            i.sigmoid_()
            z = i.div_(f.add_(i))  # i / (f + i); then h' = (1 - z) h + z g(pre), as f/(f+i) = 1 - z
        g = torch.where(pre >= 0, pre + 0.5, torch.sigmoid(pre))
        h.lerp_(g, z)

    def step(self, tokens: torch.Tensor, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` (n,) with the state ``h`` (L, n, H), updated in place -> logits in ``out``."""
        H = self.hidden
        if self.table is not None:
            torch.index_select(self.table, 0, tokens, out=self.row)
        else:
            torch.index_select(self.x0, 0, tokens, out=self.x)
        x = self.x
        for k, block in enumerate(self.blocks):
            if k or self.table is None:
                self.u.copy_(F.layer_norm(x, (H,), *block["n1"]))
                torch.addmm(block["bg"], self.u, block["wg"].t(), out=self.g)
            self._gates(h[k])
            x.add_(h[k])
            if block["ffn"]:
                u = F.layer_norm(x, (H,), *block["n2"])
                f = self.f[:, : block["wu"].shape[0]]
                torch.addmm(block["bu"], u, block["wu"].t(), out=f)
                x.add_(F.linear(F.gelu(f), block["wd"], block["bd"]))
        u = F.layer_norm(x, (H,), *self.norm)
        return torch.addmm(self.dec_b, u, self.dec_w.t(), out=out)
