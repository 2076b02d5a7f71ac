"""A linear-chain conditional random field over K tags: the output layer of a tagger.

The tagger gives emission scores e (N, T, K), one score per position and tag. A tag path
y_0 .. y_{L-1} of a sequence of length L scores

    s(x, y) = start[y_0] + sum_{t<L} e[t, y_t] + sum_{0<t<L} transitions[y_{t-1}, y_t] + end[y_{L-1}]

and has probability P(y | x) = exp(s(x, y)) / Z(x), where Z sums exp(s) over all K^L paths.
Everything is computed in log space, by recursions over T that are vectorised over N and K:

    forward    alpha_0 = start + e_0
               alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + transitions[i, j]) + e_t[j]
               log Z = logsumexp_j(alpha_{L-1}[j] + end[j])
    backward   beta_{L-1} = end
               beta_t[i] = logsumexp_j(transitions[i, j] + e_{t+1}[j] + beta_{t+1}[j])
    marginals  P(y_t = k | x) = exp(alpha_t[k] + beta_t[k] - log Z)
    viterbi    the forward recursion with max for logsumexp, remembering each argmax,
               then one walk back from the best final tag.

Padding: the mask (N, T) is left-aligned, True at the first L_i >= 1 positions of row i.
The emissions at padding are replaced by 0 before anything else (so inf or NaN there
cannot leak into a result or a gradient), the tags at padding are replaced by 0 before
they index anything (they may be -100 or any other value), and each recursion keeps a
row's state unchanged at its padded steps, so the state after step T-1 is the state after
the row's last real step. A row gets the same results alone as inside a padded batch.

Precision: emissions and parameters are cast to float32 and autocast is off inside, so
bf16 / fp16 emissions give float32 results. The code is device-agnostic and never moves a
value to the host (no ``.item()``), so it runs on CUDA without synchronising.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn


class CRF(nn.Module):
    """Linear-chain CRF over K tags.

    Parameters (float32, initialised uniform(-0.1, 0.1), as pytorch-crf does, so that no
    tag starts out preferred but the scores are not all tied):

    - ``transitions`` (K, K): the score of tag i followed by tag j is ``transitions[i, j]``;
    - ``start`` (K,), ``end`` (K,): the scores of a sequence starting / ending with a tag.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be at least 1, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """emissions (N, T, K), mask (N, T) -> log Z (N,), float32."""
        with _fp32(emissions):
            e, mask = self._prepare(emissions, mask)
            alpha = self._alphas(e, mask)[:, -1]  # (N, K), after each row's last real step
            return torch.logsumexp(alpha + self.end.float(), dim=1)  # (N,)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """emissions (N, T, K), tags (N, T) long, mask (N, T) -> s(x, tags) (N,), float32.
        The tags at padding are never read."""
        with _fp32(emissions):
            e, mask = self._prepare(emissions, mask)
            self._check_tags(tags, mask)
            tags = tags.long().masked_fill(~mask, 0)  # (N, T), safe to index with
            zero = e.new_zeros(())
            emitted = e.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (N, T)
            total = torch.where(mask, emitted, zero).sum(dim=1)  # (N,)
            # Transition into position t counts when position t is real (then t-1 is too).
            moved = self.transitions.float()[tags[:, :-1], tags[:, 1:]]  # (N, T-1)
            total = total + torch.where(mask[:, 1:], moved, zero).sum(dim=1)
            last = (mask.sum(dim=1) - 1).unsqueeze(1)  # (N, 1), index of the last real position
            final = tags.gather(1, last).squeeze(1)  # (N,)
            return total + self.start.float()[tags[:, 0]] + self.end.float()[final]  # (N,)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """-log P(tags | x) = log Z - s(x, tags) per sequence (N,), float32, >= 0."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    def viterbi(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """emissions (N, T, K), mask (N, T) -> the best path (N, T) long, 0 at padding,
        and its score (N,) float32."""
        with _fp32(emissions):
            e, mask = self._prepare(emissions, mask)
            transitions = self.transitions.float()
            best = self.start.float() + e[:, 0]  # (N, K): best score of a path ending in k
            pointers = []  # pointers[t-1][n, j]: best tag at t-1 before tag j at t
            for t in range(1, e.shape[1]):
                step, came_from = (best.unsqueeze(2) + transitions).max(dim=1)  # (N, K) each
                best = torch.where(mask[:, t, None], step + e[:, t], best)
                pointers.append(came_from)
            score, tag = (best + self.end.float()).max(dim=1)  # (N,) each
            # Walk back: at a padded step the tag stays the row's final tag (its pointers
            # are never followed), at a real step t follow pointers[t-1].
            path = [tag]
            for t in range(e.shape[1] - 1, 0, -1):
                previous = pointers[t - 1].gather(1, tag.unsqueeze(1)).squeeze(1)  # (N,)
                tag = torch.where(mask[:, t], previous, tag)
                path.append(tag)
            tags = torch.stack(path[::-1], dim=1)  # (N, T)
            return tags.masked_fill(~mask, 0), score

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """emissions (N, T, K), mask (N, T) -> P(y_t = k | x) (N, T, K), float32, by
        forward-backward; rows sum to 1 over K at real positions and are 0 at padding.
        Plain tensor operations, so it also works under ``torch.inference_mode()``."""
        with _fp32(emissions):
            e, mask = self._prepare(emissions, mask)
            alphas = self._alphas(e, mask)  # (N, T, K)
            betas = self._betas(e, mask)  # (N, T, K)
            log_z = torch.logsumexp(alphas[:, -1] + self.end.float(), dim=1)  # (N,)
            probs = torch.exp(alphas + betas - log_z[:, None, None])  # (N, T, K)
            return probs.masked_fill(~mask.unsqueeze(-1), 0.0)

    def _prepare(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Checked float32 emissions (N, T, K), 0 at padding, and the mask (N, T) as bool."""
        if emissions.dim() != 3 or emissions.shape[1] == 0 or emissions.shape[2] != self.num_tags:
            raise ValueError(f"emissions must have shape (N, T>=1, {self.num_tags}), got {tuple(emissions.shape)}")
        if tuple(mask.shape) != tuple(emissions.shape[:2]):
            raise ValueError(f"mask must have shape {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.to(device=emissions.device, dtype=torch.bool)
        return emissions.float().masked_fill(~mask.unsqueeze(-1), 0.0), mask

    def _check_tags(self, tags: Tensor, mask: Tensor) -> None:
        if tuple(tags.shape) != tuple(mask.shape):
            raise ValueError(f"tags must have shape {tuple(mask.shape)}, got {tuple(tags.shape)}")

    def _alphas(self, e: Tensor, mask: Tensor) -> Tensor:
        """The forward log scores alpha (N, T, K) of the prepared emissions; at padded
        steps a row keeps the alpha of its last real step."""
        transitions = self.transitions.float()
        alpha = self.start.float() + e[:, 0]  # (N, K)
        alphas = [alpha]
        for t in range(1, e.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + e[:, t]  # (N, K)
            alpha = torch.where(mask[:, t, None], step, alpha)
            alphas.append(alpha)
        return torch.stack(alphas, dim=1)

    def _betas(self, e: Tensor, mask: Tensor) -> Tensor:
        """The backward log scores beta (N, T, K) of the prepared emissions; a row's beta
        is ``end`` at its last real step and at its padded steps."""
        transitions = self.transitions.float()
        beta = self.end.float().expand(e.shape[0], -1)  # (N, K)
        betas = [beta]
        for t in range(e.shape[1] - 2, -1, -1):
            ahead = (e[:, t + 1] + beta).unsqueeze(1)  # (N, 1, K): scores from tag j at t+1 on
            step = torch.logsumexp(transitions + ahead, dim=2)  # (N, K)
            beta = torch.where(mask[:, t + 1, None], step, beta)
            betas.append(beta)
        return torch.stack(betas[::-1], dim=1)


def _fp32(emissions: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on the emissions' device: the recursions run in float32."""
    return torch.autocast(device_type=emissions.device.type, enabled=False)
