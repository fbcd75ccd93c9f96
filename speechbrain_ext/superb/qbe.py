"""Query-by-example spoken term detection without training: subsequence DTW on frozen layers.

The recipe of s3prl's ``quesst14_dtw`` downstream (SUPERB QbE) with its default settings:

1. **Standardise** every feature dimension with the mean and standard deviation of all frames
   of all queries and documents of the layer (``feature_normalization: True``).
2. **Distance** between query frame ``i`` and document frame ``j``:
   ``exp(1 − cos(q_i, d_j)) − 1`` (``dist_method: cosine_exp``).
3. **Min-max normalise each row** (each query frame, over the document's frames) to [0, 1]
   (``minmax_norm: True``).
4. **Subsequence DTW** with dtw-python's ``asymmetric`` step pattern, open begin and open end
   (``subsequence: True``): every query frame is matched exactly once while the document index
   advances by 0, 1 or 2,

       g[0, j] = D[0, j]
       g[i, j] = D[i, j] + min(g[i−1, j], g[i−1, j−1], g[i−1, j−2])
       cost    = min_j g[N−1, j] / N                 (N = query frames, dtw-python's "N" norm)

   and the score of the pair is ``−cost``. Queries shorter than 5 frames score 0 everywhere.
5. **Per-query z-normalisation** of the scores over the documents, so that one threshold fits
   all queries (MTWV uses a single threshold).

SUPERB runs this on every layer, picks the layer with the best MTWV on the dev queries and
reports its test MTWV. The DTW here is vectorised over documents and document frames (a loop
over query frames only), in torch.

Example
-------
>>> import torch
>>> D = torch.tensor([[[9.0, 0.0, 9.0], [9.0, 0.0, 9.0], [9.0, 9.0, 0.0]]])
>>> subsequence_dtw(D)  # 0 + 0 + 0 by staying on document frame 1 for two query frames
tensor([0.])
>>> queries = [torch.randn(6, 4)]
>>> docs = [torch.cat([torch.randn(3, 4), queries[0], torch.randn(2, 4)]), torch.randn(8, 4)]
>>> scores = qbe_scores(queries, docs, normalize_scores=False)
>>> bool(scores[0, 0] > scores[0, 1]), scores.shape
(True, torch.Size([1, 2]))
"""

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from speechbrain_ext.superb.metrics import (
    QUESST_BETA,
    max_term_weighted_value,
    mean_average_precision,
    read_qbe_ground_truth,
)

MIN_QUERY_FRAMES = 5  # s3prl: shorter queries are not searched (score 0)


def standardize(features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each (frames, dim) tensor standardised with the statistics of all frames of all tensors.

    Example
    -------
    >>> out = standardize([torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]])])
    >>> torch.cat(out).mean().abs().item() < 1e-6, round(torch.cat(out).std().item(), 4)
    (True, 1.0)
    """
    frames = torch.cat([f.float() for f in features])  # (all frames, dim)
    mean, std = frames.mean(0), frames.std(0).clamp_min(1e-9)
    return [(f.float() - mean) / std for f in features]


def cosine_exp_distance(query: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """``exp(cosine distance) − 1`` between (q_frames, dim) and (batch, d_frames, dim).

    Returns (batch, q_frames, d_frames).

    Example
    -------
    >>> d = cosine_exp_distance(torch.tensor([[1.0, 0.0]]), torch.tensor([[[2.0, 0.0],
    ...                         [0.0, 1.0], [-1.0, 0.0]]]))
    >>> [round(v, 4) for v in d.flatten().tolist()]  # cos 1, 0, -1 -> e^0-1, e^1-1, e^2-1
    [0.0, 1.7183, 6.3891]
    """
    q = F.normalize(query.float(), dim=-1)
    d = F.normalize(docs.float(), dim=-1)
    cosine = torch.einsum("qc,btc->bqt", q, d)
    return torch.expm1(1.0 - cosine)


def minmax_rows(dist: torch.Tensor, doc_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Each row (query frame) of (batch, q_frames, d_frames) scaled to [0, 1] over valid frames.

    Padded document frames (``>= doc_lengths``) become ``inf``.

    Example
    -------
    >>> minmax_rows(torch.tensor([[[1.0, 3.0, 2.0, 7.0]]]), torch.tensor([3]))
    tensor([[[0.0000, 1.0000, 0.5000,    inf]]])
    """
    valid = _valid(dist, doc_lengths)  # (batch, 1, d_frames)
    low = dist.masked_fill(~valid, float("inf")).amin(-1, keepdim=True)
    high = dist.masked_fill(~valid, float("-inf")).amax(-1, keepdim=True)
    scaled = (dist - low) / (high - low).clamp_min(1e-9)
    return scaled.masked_fill(~valid, float("inf"))


def _valid(dist: torch.Tensor, doc_lengths: torch.Tensor | None) -> torch.Tensor:
    frames = torch.arange(dist.shape[-1], device=dist.device)
    if doc_lengths is None:
        return torch.ones(dist.shape[0], 1, dist.shape[-1], dtype=torch.bool, device=dist.device)
    return (frames < doc_lengths.to(dist.device)[:, None])[:, None, :]


def subsequence_dtw(dist: torch.Tensor, doc_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Length-normalised cost of the best asymmetric open-begin/open-end DTW path.

    Arguments
    ---------
    dist : torch.Tensor
        (batch, q_frames, d_frames) local costs of one query against a batch of documents.
    doc_lengths : torch.Tensor, optional
        (batch,) valid document frames; later frames are ignored.

    Returns
    -------
    torch.Tensor
        (batch,) ``min_j g[N−1, j] / N`` (see the module docstring).
    """
    if dist.dim() != 3:
        raise ValueError(f"dist must be (batch, q_frames, d_frames), got {tuple(dist.shape)}")
    dist = dist.masked_fill(~_valid(dist, doc_lengths), float("inf"))
    inf = dist.new_full((dist.shape[0], 2), float("inf"))
    g = dist[:, 0]  # (batch, d_frames)
    for i in range(1, dist.shape[1]):
        shifted = torch.cat([inf, g], dim=1)  # shifted[:, j + 2] = g[:, j]
        best = torch.minimum(g, torch.minimum(shifted[:, 1:-1], shifted[:, :-2]))
        g = dist[:, i] + best
    return g.amin(-1) / dist.shape[1]


def _pad(docs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([d.shape[0] for d in docs])
    return torch.nn.utils.rnn.pad_sequence(list(docs), batch_first=True), lengths


def qbe_scores(
    queries: Sequence[torch.Tensor],
    docs: Sequence[torch.Tensor],
    *,
    normalize_features: bool = True,
    normalize_scores: bool = True,
    min_query_frames: int = MIN_QUERY_FRAMES,
    batch_size: int = 64,
) -> torch.Tensor:
    """(queries, documents) detection scores of one layer's features.

    Arguments
    ---------
    queries, docs : sequences of torch.Tensor
        (frames, dim) features of each query and document (one layer).
    normalize_features : bool
        Standardise with the statistics of all queries and documents (step 1).
    normalize_scores : bool
        Z-normalise each query's scores over the documents (step 5).
    min_query_frames : int
        Queries with fewer frames score 0 against every document.
    batch_size : int
        Documents per DTW batch.
    """
    if not queries or not docs:
        raise ValueError("need at least one query and one document")
    if normalize_features:
        features = standardize([*queries, *docs])
        queries, docs = features[: len(queries)], features[len(queries) :]
    batches = [_pad(docs[k : k + batch_size]) for k in range(0, len(docs), batch_size)]
    scores = torch.zeros(len(queries), len(docs))
    for q, query in enumerate(queries):
        if query.shape[0] < min_query_frames:
            continue
        costs = []
        for padded, lengths in batches:
            dist = minmax_rows(cosine_exp_distance(query, padded), lengths)
            costs.append(subsequence_dtw(dist, lengths))
        scores[q] = -torch.cat(costs)
    if normalize_scores:
        mean, std = scores.mean(1, keepdim=True), scores.std(1, unbiased=False, keepdim=True)
        scores = (scores - mean) / std.clamp_min(1e-9)
    return scores


def split_queries(num_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Dev and test query indices: even and odd positions.

    QUESST has dev and eval query sets searched in the same documents; the built-in corpus has
    one query set, so it is split in two the same way (deterministic, no seed).

    Example
    -------
    >>> split_queries(5)
    (array([0, 2, 4]), array([1, 3]))
    """
    indices = np.arange(num_queries)
    return indices[0::2], indices[1::2]


def select_layer(
    layer_scores: Sequence[torch.Tensor],
    targets,
    *,
    dev: np.ndarray,
    test: np.ndarray,
    beta: float = QUESST_BETA,
) -> dict:
    """The layer with the best dev MTWV, and its test MTWV and MAP.

    Arguments
    ---------
    layer_scores : sequence of (queries, documents) tensors
        :func:`qbe_scores` of each layer.
    targets : array-like of bool (queries, documents)
        True where the document contains the query.
    dev, test : np.ndarray
        Query indices of each part.
    beta : float
        False-alarm weight of the TWV.

    Returns
    -------
    dict
        ``layer``, ``dev_mtwv`` (per layer, a list), ``test_mtwv``, ``test_map``,
        ``threshold`` (the test MTWV's).

    Example
    -------
    >>> targets = np.array([[True, False], [False, True]])
    >>> good, bad = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), torch.tensor([[-1.0, 1.0]] * 2)
    >>> out = select_layer([bad, good], targets, dev=np.array([0]), test=np.array([1]))
    >>> out["layer"], out["dev_mtwv"], out["test_mtwv"], out["test_map"]
    (1, [0.0, 1.0], 1.0, 1.0)
    """
    targets = np.asarray(targets, dtype=bool)
    dev_mtwv = [
        max_term_weighted_value(s.numpy()[dev], targets[dev], beta=beta)[0] for s in layer_scores
    ]
    layer = int(np.argmax(dev_mtwv))
    best = layer_scores[layer].numpy()
    test_mtwv, threshold = max_term_weighted_value(best[test], targets[test], beta=beta)
    return {
        "layer": layer,
        "dev_mtwv": dev_mtwv,
        "test_mtwv": test_mtwv,
        "test_map": mean_average_precision(best[test], targets[test]),
        "threshold": threshold,
    }


@torch.no_grad()
def encode_utterances(encoder, wavs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Every layer's (frames, dim) features of each waveform, one utterance at a time.

    ``encoder(wavs, wav_lens) -> list of (batch, frames, dim)`` is the contract of
    :func:`speechbrain_ext.load_ssl_encoder`. Returns ``features[layer][utterance]``.
    """
    layers = None
    for wav in wavs:
        outputs = encoder(wav.float()[None], torch.ones(1))
        if layers is None:
            layers = [[] for _ in outputs]
        for store, out in zip(layers, outputs):
            store.append(out[0].float().cpu())
    return layers


def _read_manifest(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def evaluate_qbe(encoder, manifest_dir, *, beta: float = QUESST_BETA) -> dict:
    """SUPERB QbE on a manifest folder (``queries.csv``, ``docs.csv``, ``ground_truth.csv``).

    The manifests are the built-in corpus' ``qbe/`` folder: ``queries.csv`` and ``docs.csv``
    with columns ``ID, duration, wav, spk_id, wrd``, and ``ground_truth.csv`` with
    ``query_id, doc_id, label``. Every layer is scored, the best on the dev queries
    (:func:`split_queries`) is kept, and its test MTWV and MAP are returned with
    :func:`select_layer`'s other fields.
    """
    from speechbrain.dataio.dataio import read_audio

    manifest_dir = Path(manifest_dir)
    query_ids, doc_ids, targets = read_qbe_ground_truth(manifest_dir / "ground_truth.csv")
    wav_of = {
        row["ID"]: row["wav"]
        for name in ("queries.csv", "docs.csv")
        for row in _read_manifest(manifest_dir / name)
    }
    missing = [utt for utt in (*query_ids, *doc_ids) if utt not in wav_of]
    if missing:
        raise KeyError(f"ground truth names utterances absent from the manifests: {missing[:5]}")
    query_layers = encode_utterances(encoder, [read_audio(wav_of[q]) for q in query_ids])
    doc_layers = encode_utterances(encoder, [read_audio(wav_of[d]) for d in doc_ids])
    layer_scores = [qbe_scores(q, d) for q, d in zip(query_layers, doc_layers)]
    dev, test = split_queries(len(query_ids))
    return select_layer(layer_scores, targets, dev=dev, test=test, beta=beta)
