"""QbE by subsequence DTW: hand-computed costs, a brute-force reference, padding, pipeline."""

import itertools
import time

import numpy as np
import pytest
import torch

from speechbrain_ext.superb import qbe


def brute_force_cost(dist: np.ndarray) -> float:
    """Min over every asymmetric path (each query frame once, doc index +0/+1/+2) / N."""
    n, m = dist.shape
    best = np.inf
    for start in range(m):
        for steps in itertools.product((0, 1, 2), repeat=n - 1):
            cols = start + np.concatenate([[0], np.cumsum(steps)])
            if cols[-1] < m:
                best = min(best, dist[np.arange(n), cols].sum())
    return best / n


def test_dtw_hand_computed():
    dist = torch.tensor([[1.0, 5.0, 0.0, 3.0], [2.0, 0.0, 4.0, 1.0], [3.0, 2.0, 1.0, 0.0]])
    # g0 = [1 5 0 3]; g1 = [3 1 4 1]; g2 = [6 3 2 1] -> min 1, over 3 query frames.
    assert qbe.subsequence_dtw(dist[None]).item() == pytest.approx(1 / 3)
    # Staying on a document frame (the (i-1, j) step) is allowed: 0 + 0 + 0.
    stay = torch.tensor([[[9.0, 0.0, 9.0], [9.0, 0.0, 9.0], [9.0, 9.0, 0.0]]])
    assert qbe.subsequence_dtw(stay).item() == 0.0
    # Skipping one document frame (the (i-1, j-2) step) is allowed, two are not.
    skip = torch.tensor([[[0.0, 9.0, 9.0, 9.0, 9.0], [9.0, 9.0, 0.0, 9.0, 9.0]]])
    assert qbe.subsequence_dtw(skip).item() == 0.0
    jump = torch.tensor([[[0.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 0.0]]])
    assert qbe.subsequence_dtw(jump).item() == pytest.approx(4.5)


def test_dtw_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    for n, m in [(2, 3), (3, 5), (4, 7), (5, 6)]:
        dist = torch.rand(n, m, generator=generator)
        expected = brute_force_cost(dist.double().numpy())
        assert qbe.subsequence_dtw(dist[None]).item() == pytest.approx(expected, rel=1e-6)


def test_dtw_batch_with_padding_equals_one_by_one():
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(6, 5, generator=generator)
    docs = [torch.randn(t, 5, generator=generator) for t in (4, 11, 8)]
    padded, lengths = qbe._pad(docs)
    dist = qbe.minmax_rows(qbe.cosine_exp_distance(query, padded), lengths)
    batched = qbe.subsequence_dtw(dist, lengths)
    alone = torch.cat(
        [
            qbe.subsequence_dtw(qbe.minmax_rows(qbe.cosine_exp_distance(query, d[None])))
            for d in docs
        ]
    )
    torch.testing.assert_close(batched, alone)


def test_minmax_rows_ignores_padding():
    dist = torch.tensor([[[4.0, 2.0, 0.0], [1.0, 3.0, -5.0]]])
    out = qbe.minmax_rows(dist, torch.tensor([2]))
    assert out[0, :, :2].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert torch.isinf(out[0, :, 2]).all()


def test_scores_find_the_document_holding_the_query():
    generator = torch.Generator().manual_seed(2)
    words = [torch.randn(8, 16, generator=generator) for _ in range(3)]

    def noisy(x):
        return x + 0.1 * torch.randn(x.shape, generator=generator)

    def filler(t):
        return torch.randn(t, 16, generator=generator)

    # Document k holds word k (slowed down: frames repeated) inside filler speech.
    docs = [torch.cat([filler(5), noisy(w.repeat_interleave(2, 0)), filler(4)]) for w in words]
    queries = [noisy(w) for w in words] + [torch.randn(3, 16, generator=generator)]
    scores = qbe.qbe_scores(queries, docs)
    assert scores[:3].argmax(1).tolist() == [0, 1, 2]
    assert scores[3].abs().max() == 0.0  # too short a query: not searched
    # Per-query z-normalisation.
    torch.testing.assert_close(scores[:3].mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    targets = np.eye(4, 3, dtype=bool)
    result = qbe.select_layer(
        [-scores, scores], targets, dev=np.array([0, 1]), test=np.array([2, 3])
    )
    assert result["layer"] == 1
    assert result["test_mtwv"] == pytest.approx(1.0)  # query 3 has no target: not scored
    assert result["test_map"] == 1.0


def test_scoring_is_fast_enough_for_the_builtin_corpus():
    # Built-in QbE: 21 queries x 27 documents; 50 Hz frames; one 256-dim layer.
    generator = torch.Generator().manual_seed(3)
    queries = [torch.randn(40, 256, generator=generator) for _ in range(21)]
    docs = [torch.randn(150, 256, generator=generator) for _ in range(27)]
    start = time.perf_counter()
    scores = qbe.qbe_scores(queries, docs)
    assert time.perf_counter() - start < 5.0
    assert scores.shape == (21, 27)
