"""The language model's decoding step (a ``protocol.DecoderStep``): one token at a time for
N rows, which sampling and beam search drive.

``StepRunner`` is a hand-written inference step for the arithmetic of torch's LSTM, GRU and
tanh-RNN cells (the built-in cells): the weights of each layer are fused into one matrix,
all buffers are allocated once, and there is no autograd, so a step costs a few small
matrix products and in-place activations instead of a full ``nn.LSTM`` call. A cell of
models/cells.py's table with any other one-step function (or without biases) is stepped
through that function, layer by layer, with the same state buffers.

One row on a CPU (sampling one text, the commonest case) takes a path of its own: each
layer's weights laid out (gates, inputs) for matrix-vector products, and the first layer's
input product looked up instead of computed (a table of every token's ``W_ih e + b``, made
once), so a step reads only the recurrent weights of the first layer. At batch 1 a step is
bound by reading the weights, and this reads 8-20% fewer and makes fewer calls.
"""

from __future__ import annotations

import torch

from ..models.cells import State, cell_kind, layer_weights
from ..models.lm import RNNLanguageModel
from .scan_step import ScanStep


# The one-step functions whose arithmetic ``StepRunner.step`` has written out by hand.
_FUSED = (torch.lstm_cell, torch.gru_cell, torch.rnn_tanh_cell)

PACK_MIN_ROWS = 4  # from this many rows MKL's packed product beats a plain one (below, it does not)
# What ``_lay_out`` makes from a model's weights: kept with the model and shared by its runners.
_LAID_OUT = ("emb", "dec_w", "dec_b", "w", "b", "w_hh", "b_hh", "layer_w", "vw", "vb", "vwh", "vbh", "table", "dec_wv")
# (w, b, w_hh, b_hh and dec_w, the batched path's, are made when first needed: ``_batched``)
TABLE_MAX = 1 << 22  # the most floats (16 MB) the first layer's input table may take


def _mkl_packing() -> bool:
    """Whether this torch has MKL's packed-weight linear (x86 builds with MKL)."""
    try:
        return bool(torch.backends.mkl.is_available()) and hasattr(torch.ops.mkl, "_mkl_linear")
    except (AttributeError, RuntimeError):
        return False


class StepRunner:
    """One-token-at-a-time inference for an RNNLanguageModel, batch of N rows.

    Shapes: tokens (N,), state per layer h (N, H) (and c (N, H) for a paired cell such as
    LSTM), logits (N, V).

    ``pack=True`` is for a caller that keeps the same N for many steps (sampling N rows,
    beam search): from ``PACK_MIN_ROWS`` rows on a CPU with MKL, ``start`` lays each
    layer's weights out once for products of exactly N rows (MKL's packed GEMM), which
    measured 20-25% faster per product for 8 rows than the plain one. The values agree
    with the plain product to float32 rounding; with one row nothing changes.
    """

    def __init__(self, model: RNNLanguageModel, pack: bool = False, vector: bool = True):
        cfg = model.config
        self.cell, self.layers, self.hidden = cfg.cell, cfg.layers, cfg.hidden_size
        self.kind = cell_kind(cfg.cell)
        # The one-step function whose arithmetic ``step`` writes out by hand (a built-in
        # cell's, with both biases), or None: each layer then steps through the entry's
        # own function (``_generic_step``).
        self.fused = self.kind.step if self.kind.step in _FUSED and model.rnn.bias else None
        # A parallel-scan cell (models/minrnn.py) has a step of its own (decoding/scan_step.py).
        self.stack = ScanStep(model) if self.kind.parallel else None
        p = next(model.parameters())
        self.device, self.dtype = p.device, torch.float32
        # The weights laid out for stepping are made once per model and kept with it until
        # its parameters change (an optimiser step or a load bumps their versions).
        key = (self.fused, tuple((q.data_ptr(), q._version) for q in model.parameters()))
        cached = model.__dict__.get("_charrnn_step_weights")
        if cached is not None and cached[0] == key:
            self.__dict__.update(cached[1])
            self._laid = cached[1]
        else:
            with torch.no_grad():
                self._lay_out(model)
            self._laid = {k: getattr(self, k) for k in _LAID_OUT}
            model.__dict__["_charrnn_step_weights"] = (key, self._laid)
        self.n = 0
        self.allow_vector = vector  # False: one row takes the batched path too (tests compare the two)
        self.vector = False  # whether the one-row path runs (set by ``start``)
        self.pack = pack and self.device.type == "cpu" and _mkl_packing()
        self.packed: dict[str, list[torch.Tensor]] | None = None  # per product kind, per layer
        self._packed_rows = 0

    def _lay_out(self, model: RNNLanguageModel) -> None:
        """Make the step's weights from the model's (see ``_LAID_OUT``), in torch's own
        (gates, inputs) layout, which the one-row path multiplies as it is; the batched
        path's transposed copies are made when a batch first needs them (``_batched``)."""
        cfg = model.config
        self.emb = model.embedding.weight.detach().float()
        self.dec_wv = model.decoder.weight.detach().float()  # (V, H)
        self.dec_b = model.decoder.bias.detach().float().view(1, -1)
        self.dec_w = self.w = self.b = self.w_hh = self.b_hh = None
        self.vw: list[torch.Tensor] = []  # per layer (G, in [+ H]): what multiplies the layer's input
        self.vb: list[torch.Tensor] = []
        self.vwh: list[torch.Tensor] = []  # GRU: W_hh (3H, H); the others: the first layer's h columns
        self.vbh: list[torch.Tensor] = []
        self.layer_w: list[list[torch.Tensor]] = []  # the generic path's: w_ih, w_hh[, b_ih, b_hh]
        self.table: torch.Tensor | None = None
        for layer in range(0 if self.kind.parallel else cfg.layers):
            weights = [w.detach().float() for w in layer_weights(model.rnn, layer)]
            if self.fused is None:
                self.layer_w.append(weights)
                continue
            w_ih, w_hh, b_ih, b_hh = weights
            if self.fused is torch.gru_cell:
                # GRU multiplies the hidden part of the candidate gate by r: keep the
                # input and hidden products apart.
                self.vw.append(w_ih.contiguous())
                self.vb.append(b_ih.contiguous())
                self.vwh.append(w_hh.contiguous())
                self.vbh.append(b_hh.contiguous())
            else:
                # [x, h] @ [W_ih | W_hh]^T + (b_ih + b_hh): one product per layer. LSTM
                # gates go from torch's order (input, forget, cell, output) to input,
                # forget, output, cell: one sigmoid over the first three, one tanh.
                w, b = torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh
                if self.fused is torch.lstm_cell:
                    H = self.hidden
                    order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                                       torch.arange(2 * H, 3 * H)])
                    w, b = w[order], b[order]
                self.vw.append(w)
                self.vb.append(b)
        if self.fused is None or self.device.type != "cpu":
            return
        E = self.emb.shape[1]
        if self.fused is not torch.gru_cell:
            self.vwh.append(self.vw[0][:, E:].contiguous())
        V, G = self.emb.shape[0], self.vw[0].shape[0]
        if V * G <= TABLE_MAX:
            # Row t: the first layer's input product and bias for token t (GRU: its b_ih).
            self.table = torch.addmm(self.vb[0].view(1, -1), self.emb, self.vw[0][:, :E].t()).contiguous()

    def _batched(self) -> None:
        """The batched path's weights, (inputs, gates) for ``x @ W``, made once per model."""
        if self.w is not None:
            return
        self.w = [w.t().contiguous() for w in self.vw]
        self.b = [b.view(1, -1) for b in self.vb]
        self.w_hh = [w.t().contiguous() for w in self.vwh] if self.fused is torch.gru_cell else []
        self.b_hh = [b.view(1, -1) for b in self.vbh] if self.fused is torch.gru_cell else []
        self.dec_w = self.dec_wv.t().contiguous()  # (H, V)
        self._laid.update({k: getattr(self, k) for k in ("w", "b", "w_hh", "b_hh", "dec_w")})

    def start(self, state: State | None, n: int) -> None:
        """Allocate buffers for ``n`` rows from a model state of batch 1 (or None)."""
        H, L, dev = self.hidden, self.layers, self.device
        self.n = n
        if state is None:
            h = torch.zeros(L, 1, H, device=dev)
            c = torch.zeros(L, 1, H, device=dev)
        elif isinstance(state, tuple):
            h, c = state
        else:
            h, c = state, torch.zeros_like(state)
        # Every layer's h and c in one tensor (2, L, n, H), so that a beam reorder is one
        # index_select and one copy however many layers there are.
        self.hc = torch.empty(2, L, n, H, device=dev)
        self.hc[0].copy_(h.float().expand(L, n, H))
        self.hc[1].copy_(c.float().expand(L, n, H))
        self.h = list(self.hc[0].unbind(0))  # views: (n, H) per layer
        self.c = list(self.hc[1].unbind(0))
        in_sizes = [self.emb.shape[1]] + [H] * (L - 1)
        if self.fused is torch.gru_cell:
            self.x = [torch.empty(n, s, device=dev) for s in in_sizes]
            self.gi = torch.empty(n, 3 * H, device=dev)
            self.gh = torch.empty(n, 3 * H, device=dev)
        elif self.fused is not None:
            self.x = [torch.empty(n, s + H, device=dev) for s in in_sizes]  # [input | h]
        else:  # the generic step needs no buffers of its own
            self.x = []
        self.vector = n == 1 and self.allow_vector and self.fused is not None and dev.type == "cpu"
        if not self.vector:
            self._batched()
        self.g = torch.empty(n, self.kind.gates * H, device=dev)
        self.logits = torch.empty(n, self.dec_wv.shape[0], device=dev)
        # The views a step writes and reads, made once (a slice is a small op of its own).
        self.x_parts = [(x[:, :s], x[:, s:]) for x, s in zip(self.x, in_sizes)]
        self.g_parts = self._lstm_gates(self.g) if self.fused is torch.lstm_cell else None
        self.g_quarters = self.g.split(H, dim=1) if self.fused is torch.lstm_cell else None
        if self.table is not None and self.fused is not torch.gru_cell and not self.vector:
            self.w_h0 = self.w[0][self.emb.shape[1]:]  # (H, G): the first layer's hidden rows
        if self.fused is torch.gru_cell:
            self.gru_parts = self._gru_gates(self.gi, self.gh)
            self.gru_rz = self.gru_parts[0][:, :H], self.gru_parts[0][:, H:]
        if self.vector:  # flat views for matrix-vector products
            self.flat = {"g": self.g.view(-1), "gi": self.gi.view(-1) if self.fused is torch.gru_cell else None,
                         "gh": self.gh.view(-1) if self.fused is torch.gru_cell else None,
                         "logits": self.logits.view(-1), "h": [h.view(-1) for h in self.h], "dec_b": self.dec_b.view(-1),
                         # the whole input of each layer: [x | h_0] for the first, and for the
                         # others [h_{i-1} | h_i], two adjacent layers of the state itself
                         "x": [self.x[0].view(-1) if self.x else None]
                              + [self.hc[0, i - 1 : i + 1].reshape(-1) for i in range(1, self.layers)]}
        self._start_packing(n)
        if self.stack is not None:
            self.stack.start(n)

    def _lstm_gates(self, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Views of LSTM gates (order input, forget, output, cell): the sigmoid part, the
        tanh part, then input, forget and output."""
        H = self.hidden
        return g[:, : 3 * H], g[:, 3 * H :], g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H]

    def _gru_gates(self, gi: torch.Tensor, gh: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Views of GRU products: r and z of the input and hidden parts, then the
        candidate's input and hidden parts."""
        H = self.hidden
        return gi[:, : 2 * H], gh[:, : 2 * H], gi[:, 2 * H :], gh[:, 2 * H :]

    def _start_packing(self, n: int) -> None:
        if not self.pack or n < PACK_MIN_ROWS or self.fused is None:
            self.packed = None
            return
        if self._packed_rows == n and self.packed is not None:
            return
        ws, bs = list(self.w), list(self.b)
        if self.fused is torch.lstm_cell:
            # The cell gate's rows doubled (exact in floating point): the step then takes
            # one sigmoid over all four gates and tanh(x) as 2 * sigmoid(2x) - 1. On CPUs
            # torch's tanh costs several times its sigmoid per element, and this removes
            # the strided tanh over the cell gate's columns (see ``step``).
            H = self.hidden
            scale = torch.ones(4 * H, device=self.device)
            scale[3 * H :] = 2.0
            ws, bs = [w * scale for w in ws], [b * scale for b in bs]
        lstm_like = self.table is not None and self.fused is not torch.gru_cell
        E = self.emb.shape[1]
        try:
            reorder = torch.ops.mkl._mkl_reorder_linear_weight
            packed = {"w": [reorder(w.t().contiguous(), n) for w in ws]}
            if self.fused is torch.gru_cell:
                packed["w_hh"] = [reorder(w.t().contiguous(), n) for w in self.w_hh]
            if lstm_like:  # with the table, the first layer multiplies h alone
                packed["h0"] = reorder(ws[0][E:].t().contiguous(), n)
        except (RuntimeError, AttributeError):  # an MKL without packing after all: plain products
            self.pack, self.packed = False, None
            return
        # What ``_mkl_linear`` takes besides the packed weights: the (out, in) weights and flat biases.
        self.packed_args = {"w": [(w.t(), b.view(-1)) for w, b in zip(ws, bs)]}
        if self.fused is torch.gru_cell:
            self.packed_args["w_hh"] = [(w.t(), b.view(-1)) for w, b in zip(self.w_hh, self.b_hh)]
        if lstm_like:
            self.packed_args["h0"] = ws[0][E:].t()
            self.packed_table = torch.addmm(bs[0], self.emb, ws[0][:E])  # the table, scaled as ws
        self.packed, self._packed_rows = packed, n

    def _product(self, kind: str, i: int, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``x @ W + b`` of layer ``i`` (``kind`` "w" or, for GRU, "w_hh"): in ``out``, or
        a new tensor from the packed product (an LSTM's cell gate doubled, see
        ``_start_packing``)."""
        if self.packed is None:
            w, b = (self.w[i], self.b[i]) if kind == "w" else (self.w_hh[i], self.b_hh[i])
            return torch.addmm(b, x, w, out=out)
        w_t, b = self.packed_args[kind][i]
        return torch.ops.mkl._mkl_linear(x, self.packed[kind][i], w_t, b, self.n)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search): row i takes the state of row index[i]."""
        self.hc.copy_(self.hc.index_select(2, index))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` (N,); return the logits (N, V) of the next token (a reused buffer)."""
        if self.stack is not None:
            return self.stack.step(tokens, self.hc[0], self.logits)
        if self.vector:
            return self._vector_step(tokens)
        H = self.hidden
        if self.fused is None:
            return self._generic_step(self.emb.index_select(0, tokens))
        inp = None if self.table is not None else self.emb.index_select(0, tokens)  # (N, E)
        for i in range(self.layers):
            h, c = self.h[i], self.c[i]
            if self.fused is torch.gru_cell:
                if inp is None:  # the first layer's input product, looked up
                    torch.index_select(self.table, 0, tokens, out=self.gi)
                else:
                    self.x[i].copy_(inp)
                    self._into(self.gi, self._product("w", i, self.x[i], self.gi))
                self._into(self.gh, self._product("w_hh", i, h, self.gh))
                rz_i, rz_h, n_i, n_h = self.gru_parts
                rz = rz_i.add_(rz_h).sigmoid_()  # (N, 2H): r, z
                n = n_i.addcmul_(rz[:, :H], n_h).tanh_()
                # h' = (1 - z) * n + z * h = n + z * (h - n): one lerp, in place
                torch.lerp(n, h, rz[:, H:], out=h)
                inp = h
                continue
            if inp is None:  # the first layer's input product, looked up; then + h @ W_hh
                if self.packed is None:
                    torch.index_select(self.table, 0, tokens, out=self.g)
                    self.g.addmm_(h, self.w_h0)
                else:
                    w_t = self.packed_args["h0"]
                    product = torch.ops.mkl._mkl_linear(h, self.packed["h0"], w_t, None, self.n)
                    torch.add(product, self.packed_table.index_select(0, tokens), out=self.g)
            else:
                x_in, x_h = self.x_parts[i]
                x_in.copy_(inp)
                x_h.copy_(h)
                self._into(self.g, self._product("w", i, self.x[i], self.g))
            if self.fused is torch.rnn_tanh_cell:
                torch.tanh(self.g, out=h)
            elif self.packed is None:  # LSTM gates in the order input, forget, output, cell (see __init__)
                sig, cand, in_g, forget, out_g = self.g_parts
                sig.sigmoid_()
                cand.tanh_()
                c.mul_(forget).addcmul_(in_g, cand)
                torch.tanh(c, out=h)
                h.mul_(out_g)
            else:  # the packed products, cell gate doubled: s = sigmoid(2x), tanh(x) = 2s - 1
                in_g, forget, out_g, s = self.g_quarters
                self.g.sigmoid_()
                c.mul_(forget).addcmul_(in_g, s, value=2.0).sub_(in_g)  # f*c + i*(2s - 1)
                torch.tanh(c, out=h)
                h.mul_(out_g)
            inp = h
        return torch.addmm(self.dec_b, inp, self.dec_w, out=self.logits)

    @staticmethod
    def _into(buffer: torch.Tensor, value: torch.Tensor) -> None:
        """A product made in ``buffer`` stays; a packed one (a new tensor) is copied there,
        so that the step reads the buffer's views made once in ``start``."""
        if value is not buffer:
            buffer.copy_(value)

    def _vector_step(self, tokens: torch.Tensor) -> torch.Tensor:
        """``step`` for one row on a CPU: matrix-vector products (see the module's notes);
        the same arithmetic as the batched step, summed in another order. A layer above
        the first reads its input and its own h as one vector, [h_{i-1} | h_i], which is
        where the state already lies (``start``): no copies."""
        f = self.flat
        if self.fused is torch.gru_cell:
            return self._vector_gru(tokens)
        g = f["g"]
        tanh_cell = self.fused is torch.rnn_tanh_cell
        if not tanh_cell:
            sig, cand, in_g, forget, out_g = self.g_parts
        for i, x in enumerate(f["x"]):
            h = self.h[i]
            if i == 0 and self.table is not None:
                torch.index_select(self.table, 0, tokens, out=self.g)
                g.addmv_(self.vwh[0], f["h"][0])
            else:
                if i == 0:
                    x_in, x_h = self.x_parts[0]
                    torch.index_select(self.emb, 0, tokens, out=x_in)
                    x_h.copy_(h)
                torch.addmv(self.vb[i], self.vw[i], x, out=g)
            if tanh_cell:
                torch.tanh(self.g, out=h)
                continue
            c = self.c[i]
            sig.sigmoid_()
            cand.tanh_()
            c.mul_(forget).addcmul_(in_g, cand)
            torch.tanh(c, out=h)
            h.mul_(out_g)
        torch.addmv(f["dec_b"], self.dec_wv, f["h"][-1], out=f["logits"])
        return self.logits

    def _vector_gru(self, tokens: torch.Tensor) -> torch.Tensor:
        f = self.flat
        gi, gh = f["gi"], f["gh"]
        rz_i, rz_h, n_i, n_h = self.gru_parts
        r, z = self.gru_rz  # views of rz_i, where r and z are once it is summed and squashed
        for i in range(self.layers):
            h = self.h[i]
            if i == 0 and self.table is not None:
                torch.index_select(self.table, 0, tokens, out=self.gi)
            else:
                x = self.emb.index_select(0, tokens).view(-1) if i == 0 else f["h"][i - 1]
                torch.addmv(self.vb[i], self.vw[i], x, out=gi)
            torch.addmv(self.vbh[i], self.vwh[i], f["h"][i], out=gh)
            rz_i.add_(rz_h).sigmoid_()
            n = n_i.addcmul_(r, n_h).tanh_()
            torch.lerp(n, h, z, out=h)  # h' = n + z * (h - n)
        torch.addmv(f["dec_b"], self.dec_wv, f["h"][-1], out=f["logits"])
        return self.logits

    def _generic_step(self, inp: torch.Tensor) -> torch.Tensor:
        """``step`` through the cell's own one-step function, layer by layer: inp (N, E) ->
        logits (N, V), the new state written into the same buffers (h, and c when paired)."""
        kind = self.kind
        for i in range(self.layers):
            h, c = self.h[i], self.c[i]
            new = kind.flatten(kind.step(inp, kind.pack((h, c)), *self.layer_w[i]))
            for buf, value in zip((h, c), new):  # h alone unless paired
                buf.copy_(value)
            inp = h
        return torch.addmm(self.dec_b, inp, self.dec_w, out=self.logits)

    @property
    def vocab_size(self) -> int:
        return self.dec_wv.shape[0]
