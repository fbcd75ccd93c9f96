"""HuBERT's targets: k-means cluster labels of MFCC or model features, made once per iteration.

Iteration 1 clusters 39-dim MFCC (13 + Δ + ΔΔ at 100 Hz, SpeechBrain's ``MFCC``) into 100
classes; iteration 2 clusters an intermediate layer of the iteration-1 model into 500. Labels are
brought to the model's 20 ms frames: MFCC frame ``2t + 1`` is the one centred nearest to the
centre of CNN frame ``t`` (12.5 ms + 20 ms · t), and model features are at that rate already.

:func:`make_targets` fits scikit-learn's ``MiniBatchKMeans`` on a seeded share of the
**training** utterances only, labels every split with the nearest centroid, and writes into its
folder ``kmeans.npy`` (the centroids), ``<split>.npz`` (utterance ID → int16 labels),
``cluster_quality.{json,md}`` (phone purity, cluster purity, PNMI against phone alignments when
the manifests have them) and, last, ``targets.json``, so a folder without it is incomplete and
redone. A complete folder made with other settings is an error, never silently reused.

Example
-------
>>> import torch
>>> mfcc = MfccFeatures()
>>> feats = mfcc(torch.randn(16000))
>>> feats.shape  # 49 frames of 20 ms for one second of audio
torch.Size([49, 39])
>>> rng = np.random.default_rng(0)
>>> points = np.concatenate([rng.normal(c, 0.1, (50, 2)) for c in (0.0, 5.0)]).astype("float32")
>>> centroids = fit_kmeans(points, num_clusters=2, seed=0)
>>> labels = assign_clusters(torch.from_numpy(points), centroids)
>>> bool((labels[:50] == labels[0]).all() and (labels[50:] != labels[0]).all())
True
"""

import json
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from speechbrain.dataio.dataio import read_audio
from speechbrain.lobes.features import MFCC

from speechbrain_ext.data.manifest import read_manifest
from speechbrain_ext.ssl.cluster_quality import cluster_quality, frame_phones
from speechbrain_ext.ssl.waveform import HUBERT_CONV_LAYERS, conv_output_lengths

logger = logging.getLogger(__name__)

TARGETS_INFO = "targets.json"
CENTROIDS = "kmeans.npy"
ALIGNMENTS = "alignments.json"


def frames_of(num_samples: int) -> int:
    """20 ms frames of HuBERT's CNN for ``num_samples`` samples."""
    lengths = conv_output_lengths(torch.tensor([num_samples]), *HUBERT_CONV_LAYERS[1:])
    return int(lengths[0])


class MfccFeatures:
    """39-dim MFCC (13 + Δ + ΔΔ, 25 ms windows every 10 ms) at HuBERT's 20 ms frames.

    ``__call__(wav)`` takes one utterance (samples,) and returns (frames, 39), ``frames`` as for
    the waveform CNN (:func:`frames_of`).
    """

    def __init__(self, *, n_mfcc: int = 13, n_mels: int = 23):
        self.mfcc = MFCC(n_mfcc=n_mfcc, n_mels=n_mels, deltas=True, context=False)
        self.dim = 3 * n_mfcc

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """Features (frames, 39) of one utterance (samples,)."""
        feats = self.mfcc(wav.float().unsqueeze(0))[0]  # (frames at 100 Hz, 39)
        frames = frames_of(wav.shape[0])
        index = (2 * torch.arange(frames) + 1).clamp(max=feats.shape[0] - 1)
        return feats[index]


class LayerFeatures:
    """One layer of a model's encoder (``encode(wavs, wav_lens) -> list``) as features.

    Arguments
    ---------
    model : nn.Module
        A HuBERT model (or anything with ``encode``), put in eval mode.
    layer : int
        Index into the list ``encode`` returns (0: the front end's output; ``k``: encoder
        layer ``k``).
    """

    def __init__(self, model, *, layer: int):
        self.model = model.eval()
        num_layers = model.encoder.num_layers
        if not 0 <= layer < num_layers:
            raise ValueError(f"layer must be in [0, {num_layers - 1}] for this model, got {layer}")
        self.layer = layer
        self.dim = model.encoder.hidden_size

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """The layer's output (frames, hidden_size) for one utterance (samples,)."""
        device = next(self.model.parameters()).device
        hidden = self.model.encode(wav.unsqueeze(0).to(device), torch.ones(1, device=device))
        return hidden[self.layer][0].float().cpu()


def fit_kmeans(
    features: np.ndarray, *, num_clusters: int, seed: int = 0, batch_size: int = 10000
) -> np.ndarray:
    """Centroids (num_clusters, dim) of scikit-learn's ``MiniBatchKMeans`` on ``features``.

    HuBERT's settings (fairseq's ``learn_kmeans.py``): k-means++ initialisation, mini-batches
    of 10,000 frames, 100 batches without improvement to stop.
    """
    from sklearn.cluster import MiniBatchKMeans

    if features.ndim != 2 or features.shape[0] < num_clusters:
        raise ValueError(
            f"k-means with {num_clusters} clusters needs at least as many frames; got "
            f"features of shape {features.shape}"
        )
    kmeans = MiniBatchKMeans(
        n_clusters=num_clusters,
        init="k-means++",
        batch_size=min(batch_size, features.shape[0]),
        max_no_improvement=100,
        n_init=3,
        random_state=seed,
        compute_labels=False,
    )
    kmeans.fit(features)
    return kmeans.cluster_centers_.astype(np.float32)


def assign_clusters(features: torch.Tensor, centroids: np.ndarray) -> torch.Tensor:
    """Index (frames,) of the nearest centroid of every frame of ``features`` (frames, dim)."""
    c = torch.as_tensor(centroids, dtype=torch.float32)
    x = features.float()
    distances = (c * c).sum(dim=1) - 2.0 * x @ c.T  # ||x - c||² - ||x||²
    return distances.argmin(dim=1)


def read_labels(path) -> dict[str, np.ndarray]:
    """Utterance ID → labels, from a ``<split>.npz`` written by :func:`make_targets`."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


def _save_npz(path: Path, arrays: dict) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_alignments(manifest: Path) -> dict | None:
    """The ``alignments.json`` beside ``manifest`` (ID → segments), or None."""
    path = Path(manifest).parent / ALIGNMENTS
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def make_targets(
    folder,
    manifests: dict,
    *,
    features: Callable[[torch.Tensor], torch.Tensor],
    source: str,
    num_clusters: int,
    kmeans_fraction: float = 0.1,
    kmeans_max_frames: int = 1_000_000,
    seed: int = 0,
) -> dict:
    """Fit k-means on training features, label every split, score the labels; once.

    Arguments
    ---------
    folder : str or Path
        Where the targets go (created).
    manifests : dict
        Split name → SpeechBrain CSV; must hold ``"train"``.
    features : callable
        One utterance's audio (samples,) → features (frames, dim) at 20 ms frames.
    source : str
        What the features are (``"mfcc"``, ``"layer 6 of <folder>"``): recorded, and checked
        when the folder is complete already.
    num_clusters : int
        k of k-means.
    kmeans_fraction : float
        Share of the training utterances (seeded draw) whose frames fit k-means.
    kmeans_max_frames : int
        At most this many frames (a seeded subset) fit k-means.
    seed : int
        Seed of the utterance draw and of k-means.

    Returns
    -------
    dict
        The content of ``targets.json``: settings, ``fit_frames``, ``files`` and
        ``cluster_quality`` (per split with alignments; ``{"skipped": reason}`` otherwise).
    """
    folder = Path(folder)
    settings = {
        "source": source,
        "num_clusters": int(num_clusters),
        "kmeans_fraction": float(kmeans_fraction),
        "kmeans_max_frames": int(kmeans_max_frames),
        "seed": int(seed),
        "manifests": {split: str(path) for split, path in sorted(manifests.items())},
    }
    info_path = folder / TARGETS_INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        differ = sorted(k for k, v in settings.items() if info.get(k) != v)
        if differ:
            raise RuntimeError(
                f"{folder} holds targets made with other settings ({', '.join(differ)}: "
                f"{[info.get(k) for k in differ]} there, {[settings[k] for k in differ]} now); "
                "remove that folder or use another output folder"
            )
        logger.info("reusing the targets in %s", folder)
        return info
    if "train" not in manifests:
        raise ValueError("make_targets needs a 'train' manifest to fit k-means on")
    if not 0.0 < kmeans_fraction <= 1.0:
        raise ValueError(f"kmeans_fraction must be in (0, 1], got {kmeans_fraction}")
    folder.mkdir(parents=True, exist_ok=True)
    rows = {split: read_manifest(path) for split, path in manifests.items()}

    def utterance_features(row):
        wav = read_audio(row["wav"])
        if wav.dim() != 1:
            raise ValueError(f"{row['wav']} (ID {row['ID']}): expected mono audio")
        return features(wav)

    # Fit on a seeded share of the training utterances only.
    train_rows = rows["train"]
    count = max(1, round(kmeans_fraction * len(train_rows)))
    chosen = random.Random(seed).sample(range(len(train_rows)), count)
    fit = np.concatenate([utterance_features(train_rows[i]).numpy() for i in sorted(chosen)])
    if fit.shape[0] > kmeans_max_frames:
        keep = np.random.default_rng(seed).choice(fit.shape[0], kmeans_max_frames, replace=False)
        fit = fit[np.sort(keep)]
    logger.info("k-means (%d clusters) on %d frames of %s", num_clusters, fit.shape[0], source)
    centroids = fit_kmeans(fit, num_clusters=num_clusters, seed=seed)
    _write_atomic(folder / CENTROIDS, lambda p: _save_npy(p, centroids))

    files, quality = {}, {}
    for split, split_rows in rows.items():
        labels = {}
        for row in split_rows:
            labels[row["ID"]] = (
                assign_clusters(utterance_features(row), centroids).numpy().astype(np.int16)
            )
        path = folder / f"{split}.npz"
        _write_atomic(path, lambda p, labels=labels: _save_npz(p, labels))
        files[split] = path.name
        alignments = load_alignments(manifests[split])
        if alignments is None:
            quality[split] = {"skipped": f"no {ALIGNMENTS} beside {manifests[split]}"}
            continue
        missing = [uid for uid in labels if uid not in alignments]
        if missing:
            quality[split] = {"skipped": f"{len(missing)} utterances without alignment"}
            continue
        phones = [frame_phones(alignments[uid], num_frames=len(z)) for uid, z in labels.items()]
        quality[split] = cluster_quality(phones, labels.values())
    info = {**settings, "fit_frames": int(fit.shape[0]), "files": files, "cluster_quality": quality}
    (folder / "cluster_quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    (folder / "cluster_quality.md").write_text(cluster_quality_markdown(info) + "\n")
    _write_atomic(info_path, lambda p: p.write_text(json.dumps(info, indent=2) + "\n"))
    return info


def cluster_quality_markdown(info: dict) -> str:
    """A Markdown table of the cluster quality in a ``targets.json``."""
    lines = [
        f"Targets: k-means with {info['num_clusters']} clusters on {info['source']} "
        f"({info['fit_frames']} training frames).",
        "",
        "| split | phone purity | cluster purity | PNMI | frames |",
        "|---|---|---|---|---|",
    ]
    for split, quality in info["cluster_quality"].items():
        if "skipped" in quality:
            lines.append(f"| {split} | skipped: {quality['skipped']} | | | |")
        else:
            lines.append(
                f"| {split} | {quality['phone_purity']:.3f} | {quality['cluster_purity']:.3f} "
                f"| {quality['pnmi']:.3f} | {quality['frames']} |"
            )
    return "\n".join(lines)
