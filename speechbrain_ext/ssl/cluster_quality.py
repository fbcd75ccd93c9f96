"""How good are k-means targets? Phone purity, cluster purity and PNMI (HuBERT paper).

With frame-aligned phone labels y and cluster labels z over all frames (joint distribution
p(y, z) from counts):

- phone purity = E_z[max_y p(y | z)]: how pure each cluster is in phones;
- cluster purity = E_y[max_z p(z | y)]: how concentrated each phone is in one cluster;
- PNMI = I(y; z) / H(y): the share of the phone entropy the clusters explain (higher is better).

Frame labels come from a phone alignment ``[(start_s, end_s, phone)]`` (the built-in corpus
writes eSpeak NG's in ``alignments.json`` beside its manifests); a frame whose centre is in no
segment is silence (``"sil"``).

Example
-------
>>> phones = [["a", "a", "b", "b"], ["c", "c"]]
>>> clusters = [[0, 0, 1, 1], [1, 1]]
>>> quality = cluster_quality(phones, clusters)
>>> quality["phone_purity"], quality["cluster_purity"]  # cluster 1 mixes b and c
(0.6666666666666666, 1.0)
>>> round(quality["pnmi"], 4)  # I(y; z) = H(y) - H(y|z) = log 3 - (4/6) log 2
0.5794
>>> frame_phones([(0.0, 0.03, "a"), (0.05, 0.09, "b")], num_frames=5, frame_shift=0.02,
...              frame_offset=0.01)
['a', 'sil', 'b', 'b', 'sil']
"""

import math
from collections import Counter

import numpy as np

SILENCE = "sil"


def frame_phones(
    segments, *, num_frames: int, frame_shift: float = 0.02, frame_offset: float = 0.0125
) -> list[str]:
    """The phone at the centre of each frame (``frame_offset + t · frame_shift`` seconds).

    Arguments
    ---------
    segments : iterable of (start_s, end_s, phone)
        A phone alignment, in seconds.
    num_frames : int
        Frames to label.
    frame_shift, frame_offset : float
        Frame period and the centre of the first frame, in seconds (HuBERT's CNN: 20 ms
        frames of 25 ms windows, the first centred at 12.5 ms).

    Returns
    -------
    list of str
        ``num_frames`` phones, :data:`SILENCE` outside every segment.
    """
    labels = [SILENCE] * num_frames
    for start, end, phone in segments:
        first = max(math.ceil((float(start) - frame_offset) / frame_shift), 0)
        for frame in range(first, num_frames):
            centre = frame_offset + frame * frame_shift
            if centre >= float(end):
                break
            if centre >= float(start):
                labels[frame] = phone
    return labels


def cluster_quality(phones, clusters) -> dict:
    """Phone purity, cluster purity and PNMI of ``clusters`` against ``phones``.

    Arguments
    ---------
    phones : iterable of sequences of str
        Per utterance, the phone of every frame.
    clusters : iterable of sequences of int
        Per utterance, the cluster of every frame (same lengths).

    Returns
    -------
    dict
        ``phone_purity``, ``cluster_purity``, ``pnmi``, ``frames``, ``phones`` (distinct
        phones seen) and ``clusters`` (distinct clusters used).
    """
    joint: Counter = Counter()
    for index, (utt_phones, utt_clusters) in enumerate(zip(phones, clusters, strict=True)):
        if len(utt_phones) != len(utt_clusters):
            raise ValueError(
                f"utterance {index}: {len(utt_phones)} phone labels but {len(utt_clusters)} "
                "cluster labels"
            )
        joint.update(zip(utt_phones, (int(z) for z in utt_clusters)))
    total = sum(joint.values())
    if total == 0:
        raise ValueError("no frames to score")
    phone_names = sorted({y for y, _ in joint})
    cluster_ids = sorted({z for _, z in joint})
    y_index = {y: i for i, y in enumerate(phone_names)}
    z_index = {z: i for i, z in enumerate(cluster_ids)}
    counts = np.zeros((len(phone_names), len(cluster_ids)))
    for (y, z), count in joint.items():
        counts[y_index[y], z_index[z]] = count
    p = counts / total  # p(y, z)
    p_y, p_z = p.sum(axis=1), p.sum(axis=0)
    nonzero = p > 0
    mutual = float((p[nonzero] * np.log(p[nonzero] / np.outer(p_y, p_z)[nonzero])).sum())
    entropy_y = float(-(p_y[p_y > 0] * np.log(p_y[p_y > 0])).sum())
    return {
        "phone_purity": float(p.max(axis=0).sum()),
        "cluster_purity": float(p.max(axis=1).sum()),
        "pnmi": mutual / entropy_y if entropy_y > 0 else 0.0,
        "frames": int(total),
        "phones": len(phone_names),
        "clusters": len(cluster_ids),
    }
