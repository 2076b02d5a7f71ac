"""The linear-chain CRF, against brute force over every tag path: log Z, the Viterbi path,
path scores, nll and posterior marginals; padding invariance, gradients, a tiny learning
problem, bf16 emissions. Sizes are small and all different (K 3, T 5, N 4) so that a
transposed dimension cannot go unnoticed; every length from 1 to 4 appears in one batch."""

from __future__ import annotations

import itertools

import pytest
import torch

from charrnn.models.crf import CRF

K, T = 3, 5
LENGTHS = [4, 1, 3, 2]  # N = 4, unsorted, each row padded (T = 5)


def _crf(seed: int = 0, num_tags: int = K) -> CRF:
    """A CRF with random, not initial, parameters of a useful size."""
    torch.manual_seed(seed)
    crf = CRF(num_tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn_like(p))
    return crf


def _batch(seed: int = 1, garbage: float = 1e4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """emissions (N, T, K), mask (N, T), tags (N, T): random at the real positions,
    large random values in the emissions and -100 in the tags at padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(LENGTHS)
    mask = torch.arange(T) < lengths[:, None]
    emissions = torch.randn(len(LENGTHS), T, K, generator=g)
    emissions = torch.where(mask[..., None], emissions, garbage * torch.randn(emissions.shape, generator=g))
    tags = torch.randint(0, K, (len(LENGTHS), T), generator=g).masked_fill(~mask, -100)
    return emissions, mask, tags


def _path_score(crf: CRF, e: torch.Tensor, path: tuple[int, ...]) -> float:
    """The score of ``path`` for one unpadded sequence e (L, K), by a plain loop in float64."""
    trans, start, end = (p.detach().double() for p in (crf.transitions, crf.start, crf.end))
    e = e.double()
    total = start[path[0]] + e[0, path[0]]
    for t in range(1, len(path)):
        total = total + trans[path[t - 1], path[t]] + e[t, path[t]]
    return float(total + end[path[-1]])


def _all_paths(crf: CRF, e: torch.Tensor) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    """Every tag path of e (L, K) and their scores (K^L,), float64."""
    paths = list(itertools.product(range(crf.num_tags), repeat=e.shape[0]))
    return paths, torch.tensor([_path_score(crf, e, p) for p in paths], dtype=torch.float64)


def _rows(emissions: torch.Tensor) -> list[torch.Tensor]:
    """The real part (L, K) of each row."""
    return [emissions[i, :n] for i, n in enumerate(LENGTHS)]


def test_log_partition_matches_brute_force():
    crf, (emissions, mask, _) = _crf(), _batch()
    got = crf.log_partition(emissions, mask)
    assert got.shape == (len(LENGTHS),) and got.dtype == torch.float32
    want = torch.stack([torch.logsumexp(_all_paths(crf, e)[1], dim=0) for e in _rows(emissions)])
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_viterbi_matches_brute_force():
    crf, (emissions, mask, _) = _crf(), _batch()
    tags, score = crf.viterbi(emissions, mask)
    assert tags.shape == (len(LENGTHS), T) and tags.dtype == torch.long and score.dtype == torch.float32
    for i, e in enumerate(_rows(emissions)):
        paths, scores = _all_paths(crf, e)
        best = int(scores.argmax())
        assert tuple(tags[i, : LENGTHS[i]].tolist()) == paths[best]
        assert score[i].item() == pytest.approx(scores[best].item(), abs=1e-5)
    assert (tags[~mask] == 0).all()
    torch.testing.assert_close(crf.score(emissions, tags, mask), score)


def test_score_matches_hand_loop():
    crf, (emissions, mask, tags) = _crf(), _batch()
    got = crf.score(emissions, tags, mask)
    for i, e in enumerate(_rows(emissions)):
        path = tuple(tags[i, : LENGTHS[i]].tolist())
        assert got[i].item() == pytest.approx(_path_score(crf, e, path), abs=1e-5)


def test_nll_is_nonnegative_and_normalised():
    crf, (emissions, mask, tags) = _crf(), _batch()
    assert (crf.nll(emissions, tags, mask) >= 0).all()
    for e in _rows(emissions):
        # Every path of this sequence at once: P copies of it, one path per row.
        paths = torch.tensor(list(itertools.product(range(K), repeat=e.shape[0])))  # (P, L)
        copies = e.expand(len(paths), -1, -1)  # (P, L, K)
        nll = crf.nll(copies, paths, torch.ones(paths.shape, dtype=torch.bool))  # (P,)
        assert (nll >= -1e-6).all()
        assert torch.exp(-nll.double()).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_marginals_match_brute_force():
    crf, (emissions, mask, _) = _crf(), _batch()
    got = crf.marginals(emissions, mask)
    assert got.shape == (len(LENGTHS), T, K) and got.dtype == torch.float32
    for i, e in enumerate(_rows(emissions)):
        paths, scores = _all_paths(crf, e)
        probs = torch.softmax(scores, dim=0)  # (P,)
        want = torch.zeros(e.shape, dtype=torch.float64)  # (L, K)
        for p, path in zip(probs, paths):
            for t, k in enumerate(path):
                want[t, k] += p
        torch.testing.assert_close(got[i, : LENGTHS[i]].double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.sum(-1)[mask], torch.ones(sum(LENGTHS)))
    assert (got[~mask] == 0).all()


def test_marginals_under_inference_mode():
    crf, (emissions, mask, _) = _crf(), _batch()
    want = crf.marginals(emissions, mask)
    with torch.inference_mode():
        got = crf.marginals(emissions.clone(), mask.clone())
    torch.testing.assert_close(got, want)
    with torch.no_grad():
        torch.testing.assert_close(crf.marginals(emissions, mask), want)


def test_padding_never_changes_a_result():
    crf, (emissions, mask, tags) = _crf(), _batch(garbage=1e4)
    batch = (crf.log_partition(emissions, mask), *crf.viterbi(emissions, mask),
             crf.marginals(emissions, mask), crf.nll(emissions, tags, mask))
    for i, n in enumerate(LENGTHS):
        e, m, y = emissions[i : i + 1, :n], mask[i : i + 1, :n], tags[i : i + 1, :n]
        alone = (crf.log_partition(e, m), *crf.viterbi(e, m), crf.marginals(e, m), crf.nll(e, y, m))
        torch.testing.assert_close(alone[0], batch[0][i : i + 1])
        assert torch.equal(alone[1], batch[1][i : i + 1, :n])
        torch.testing.assert_close(alone[2], batch[2][i : i + 1])
        torch.testing.assert_close(alone[3], batch[3][i : i + 1, :n])
        torch.testing.assert_close(alone[4], batch[4][i : i + 1])


def test_non_finite_padding_is_ignored():
    crf, (emissions, mask, tags) = _crf(), _batch()
    want = crf.nll(emissions, tags, mask)
    bad = emissions.masked_fill(~mask[..., None], float("nan"))
    bad[1, 3] = float("inf")
    bad.requires_grad_(True)
    got = crf.nll(bad, tags, mask)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    assert torch.isfinite(bad.grad).all() and (bad.grad[~mask] == 0).all()


def test_gradients_are_finite():
    crf, (emissions, mask, tags) = _crf(), _batch()
    emissions.requires_grad_(True)
    crf.nll(emissions, tags, mask).sum().backward()
    for name in ("transitions", "start", "end"):
        grad = getattr(crf, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert torch.isfinite(emissions.grad).all()
    assert (emissions.grad[~mask] == 0).all() and emissions.grad[mask].abs().sum() > 0


def test_gradient_of_log_z_is_the_marginals():
    crf, (emissions, mask, _) = _crf(), _batch()
    emissions.requires_grad_(True)
    (grad,) = torch.autograd.grad(crf.log_partition(emissions, mask).sum(), emissions)
    torch.testing.assert_close(grad, crf.marginals(emissions.detach(), mask))


def test_learns_a_tiny_tagging_rule():
    """With no emission information, the gold tags 0 1 2 0 1 2 ... can only be learnt by
    the start and transition scores."""
    torch.manual_seed(0)
    crf = CRF(K)
    emissions = torch.zeros(len(LENGTHS), T, K)
    mask = torch.arange(T) < torch.tensor(LENGTHS)[:, None]
    gold = (torch.arange(T) % K).expand(len(LENGTHS), -1).masked_fill(~mask, -100)
    optimiser = torch.optim.Adam(crf.parameters(), lr=0.1)
    for _ in range(30):
        optimiser.zero_grad()
        crf.nll(emissions, gold, mask).mean().backward()
        optimiser.step()
    tags, _ = crf.viterbi(emissions, mask)
    assert torch.equal(tags, gold.masked_fill(~mask, 0))


def test_bf16_emissions_give_float32():
    crf, (emissions, mask, tags) = _crf(), _batch(garbage=1.0)
    half = emissions.bfloat16()
    full = half.float()
    outs = {
        "log_partition": (crf.log_partition(half, mask), crf.log_partition(full, mask)),
        "score": (crf.score(half, tags, mask), crf.score(full, tags, mask)),
        "nll": (crf.nll(half, tags, mask), crf.nll(full, tags, mask)),
        "viterbi": (crf.viterbi(half, mask)[1], crf.viterbi(full, mask)[1]),
        "marginals": (crf.marginals(half, mask), crf.marginals(full, mask)),
    }
    for name, (got, want) in outs.items():
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got, want, msg=name)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert crf.nll(half, tags, mask).dtype == torch.float32
        assert crf.marginals(half, mask).dtype == torch.float32


def test_one_step_and_one_tag():
    crf = _crf(num_tags=1)
    e = torch.randn(2, 1, 1)
    mask = torch.ones(2, 1, dtype=torch.bool)
    want = crf.start[0] + e[:, 0, 0] + crf.end[0]
    torch.testing.assert_close(crf.log_partition(e, mask), want)
    torch.testing.assert_close(crf.nll(e, torch.zeros(2, 1, dtype=torch.long), mask), torch.zeros(2))
    assert torch.equal(crf.viterbi(e, mask)[0], torch.zeros(2, 1, dtype=torch.long))


def test_shape_errors():
    crf = CRF(K)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="emissions"):
        crf.log_partition(torch.zeros(2, 4, K + 1), mask)
    with pytest.raises(ValueError, match="mask"):
        crf.viterbi(torch.zeros(2, 4, K), mask[:, :3])
    with pytest.raises(ValueError, match="tags"):
        crf.score(torch.zeros(2, 4, K), torch.zeros(2, 3, dtype=torch.long), mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    crf, (emissions, mask, tags) = _crf(), _batch()
    gpu = _crf().cuda()
    e, m, y = emissions.cuda(), mask.cuda(), tags.cuda()
    torch.testing.assert_close(gpu.nll(e, y, m).cpu(), crf.nll(emissions, tags, mask))
    assert torch.equal(gpu.viterbi(e, m)[0].cpu(), crf.viterbi(emissions, mask)[0])
    torch.testing.assert_close(gpu.marginals(e, m).cpu(), crf.marginals(emissions, mask))
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        assert gpu.nll(e.bfloat16(), y, m).dtype == torch.float32
