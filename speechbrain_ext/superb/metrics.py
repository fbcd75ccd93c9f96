"""SUPERB metrics: QbE (MTWV, MAP), slot filling (slot-type F1, slot-value CER), SD (DER).

Query-by-example (QUESST 2014 protocol, as scored in SUPERB)
------------------------------------------------------------
Every (query, document) pair is a trial; a system gives each a score, and a document is
detected for a query when its score is at least a threshold θ shared by all queries. With
``N_tgt(q)`` documents that contain query ``q`` and ``N_nt(q)`` that do not (the non-target
trials of that query),

    P_miss(q, θ) = 1 − hits(q, θ) / N_tgt(q)
    P_FA(q, θ)   = false_alarms(q, θ) / N_nt(q)
    TWV(θ)       = 1 − mean over queries with N_tgt(q) > 0 of [P_miss(q, θ) + β·P_FA(q, θ)]
    β            = C_FA / C_miss · (1 / P_target − 1)
    MTWV         = max over θ of TWV(θ)

Rejecting every trial gives TWV = 0, so MTWV ≥ 0. The NIST STD 2006 evaluation plan has
C_FA / C_miss = 0.1 and P_target = 1e-4, hence β = 999.9 (:data:`NIST_STD_2006_BETA`). The
MediaEval SWS 2013 / QUESST 2014 overview papers give P_target = 0.0008, C_FA = 1,
C_miss = 100, hence β = 12.49 (:data:`QUESST_BETA`, the default here). SUPERB scores QbE with
QUESST's own scorer (``score-TWV-Cnxe.sh``), so its MTWV uses the QUESST constants; pass
``beta`` to use another cost model. MAP is the mean over queries (with at least one target) of
the average precision of the documents ranked by descending score.

Slot filling (s3prl ``s3prl/metric/slot_filling.py``, used by SUPERB's SF task)
-------------------------------------------------------------------------------
Texts carry slot tags around values, ``"PLAY B-genre JAZZ E-genre"`` (the built-in corpus'
``slot_wrd`` column and the CTC target). Per utterance, the slot *types* of reference and
hypothesis form two sets; ``slot_type_f1`` is the mean over utterances of their F1 (1 when both
are empty, 0 when only one is). ``slot_value_cer`` is a corpus-level character error rate over
reference slot values: each reference value is paired with the hypothesis value of the same
slot type that has the lowest CER (the empty string when the hypothesis lacks that type), and
the edit distances are summed and divided by the total reference length. Spurious hypothesis
slots do not count in the CER (they lower the F1).

Speaker diarization (SUPERB SD: ``dscore`` with its defaults)
-------------------------------------------------------------
DER = (missed speech + false alarm + speaker confusion) / total reference speech, computed by
``pyannote.metrics`` with no collar and overlapped speech scored (``collar=0``,
``skip_overlap=False``), as ``dscore``'s defaults that s3prl's ``score.sh`` uses.

Example
-------
>>> import numpy as np
>>> scores = np.array([[3.0, 1.0, 2.0], [0.5, 2.5, 1.5]])
>>> targets = np.array([[True, False, False], [False, True, True]])
>>> max_term_weighted_value(scores, targets, beta=1.0)
(0.75, 2.5)
>>> round(mean_average_precision(scores, targets), 4)
1.0
>>> parse_slots("PLAY B-genre SMOOTH JAZZ E-genre NOW")
[('genre', 'SMOOTH JAZZ')]
>>> slot_type_f1(["IS IT COLD IN B-city TORONTO E-city"], ["IS IT COLD IN B-city TORONTO E-city"])
1.0
"""

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np


def twv_beta(*, p_target: float, cost_fa: float, cost_miss: float = 1.0) -> float:
    """The false-alarm weight β = C_FA / C_miss · (1 / P_target − 1) of the TWV.

    Example
    -------
    >>> round(twv_beta(p_target=1e-4, cost_fa=0.1), 6)
    999.9
    >>> round(twv_beta(p_target=0.0008, cost_fa=1.0, cost_miss=100.0), 6)
    12.49
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    return cost_fa / cost_miss * (1.0 / p_target - 1.0)


NIST_STD_2006_BETA = twv_beta(p_target=1e-4, cost_fa=0.1)  # 999.9
QUESST_BETA = twv_beta(p_target=0.0008, cost_fa=1.0, cost_miss=100.0)  # 12.49


def _trial_arrays(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=bool)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"expected scores and targets of the same (queries, documents) shape, got "
            f"{scores.shape} and {targets.shape}"
        )
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite (give every trial a score)")
    keep = targets.any(axis=1)  # queries without a target are not scored (as in NIST STD)
    if not keep.any():
        raise ValueError("no query has a target document")
    return scores[keep], targets[keep]


def max_term_weighted_value(scores, targets, *, beta: float = QUESST_BETA) -> tuple[float, float]:
    """MTWV over a full trial matrix, and the threshold that reaches it.

    Arguments
    ---------
    scores : array-like (queries, documents)
        Detection scores, higher = more likely that the document contains the query.
    targets : array-like of bool (queries, documents)
        True where the document contains the query.
    beta : float
        False-alarm weight (:func:`twv_beta`); QUESST's by default.

    Returns
    -------
    (mtwv, threshold)
        A trial is a detection when its score is ``>= threshold``; ``inf`` when rejecting
        everything (TWV 0) is best.

    Example
    -------
    >>> max_term_weighted_value([[1.0, 0.0]], [[False, True]])
    (0.0, inf)
    >>> max_term_weighted_value([[0.0, 1.0]], [[False, True]])
    (1.0, 1.0)
    """
    scores, targets = _trial_arrays(scores, targets)
    num_queries, num_docs = scores.shape
    n_target = targets.sum(axis=1, keepdims=True)  # (queries, 1)
    n_nontarget = np.maximum(num_docs - n_target, 1)
    # Accepting a trial adds its share to TWV = mean(hits / N_tgt) − β·mean(FA / N_nt).
    gain = np.where(targets, 1.0 / n_target, -beta / n_nontarget) / num_queries
    flat_scores, flat_gain = scores.ravel(), gain.ravel()
    order = np.argsort(-flat_scores, kind="stable")
    sorted_scores = flat_scores[order]
    twv = np.cumsum(flat_gain[order])
    # Equal scores are accepted together: TWV is only defined at the end of each tie group.
    group_end = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    candidates, thresholds = twv[group_end], sorted_scores[group_end]
    best = int(np.argmax(candidates))
    if candidates[best] <= 0.0:
        return 0.0, float("inf")
    return round(float(candidates[best]), 12), float(thresholds[best])


def mean_average_precision(scores, targets) -> float:
    """Mean over queries (with a target) of the average precision of their document ranking.

    Documents are ranked by descending score; ties keep the documents' order.

    Example
    -------
    >>> mean_average_precision([[2.0, 2.5, 1.5]], [[False, True, True]])  # ranks 1 and 3
    0.8333333333333333
    """
    scores, targets = _trial_arrays(scores, targets)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(targets, order, axis=1)  # (queries, documents)
    hits = np.cumsum(ranked, axis=1)
    precision = hits / np.arange(1, scores.shape[1] + 1)
    average = (precision * ranked).sum(axis=1) / ranked.sum(axis=1)
    return float(average.mean())


def read_qbe_ground_truth(path) -> tuple[list[str], list[str], np.ndarray]:
    """Query ids, document ids and the (queries, documents) target matrix of a QbE manifest.

    Reads the built-in corpus' ``qbe/ground_truth.csv`` (columns ``query_id, doc_id, label``,
    one row per trial, label 1 when the document contains the query). Ids keep their order of
    first appearance; a trial missing from the file is a non-target.
    """
    queries, docs, positives = {}, {}, set()
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            queries.setdefault(row["query_id"], len(queries))
            docs.setdefault(row["doc_id"], len(docs))
            if int(row["label"]) == 1:
                positives.add((row["query_id"], row["doc_id"]))
    targets = np.zeros((len(queries), len(docs)), dtype=bool)
    for query, doc in positives:
        targets[queries[query], docs[doc]] = True
    return list(queries), list(docs), targets


# ----------------------------------------------------------------------------- slot filling
_SLOT = re.compile(r"B-(\S+) (.+?) E-\1(?!\S)")
_TAG = re.compile(r"(?<!\S)[BE]-\S+(?!\S)")


def strip_slot_tags(text: str) -> str:
    """The words of a tagged text without its ``B-x`` / ``E-x`` tags.

    Example
    -------
    >>> strip_slot_tags("FIND THE B-object_type BOOK E-object_type NOW")
    'FIND THE BOOK NOW'
    """
    return " ".join(_TAG.sub(" ", text).split())


def parse_slots(text: str) -> list[tuple[str, str]]:
    """(slot type, value) pairs of a tagged text such as a CTC hypothesis.

    A slot is ``B-<type> <value> E-<type>`` with the same type on both tags; unmatched or
    crossed tags are ignored and tags nested inside a value are removed from it (s3prl's
    parsing rule).

    Example
    -------
    >>> parse_slots("BOOK B-party_size_number TWO E-party_size_number B-timerange AT "
    ...             "EIGHT PM E-timerange")
    [('party_size_number', 'TWO'), ('timerange', 'AT EIGHT PM')]
    >>> parse_slots("B-city PARIS E-date")
    []
    """
    text = " ".join(text.split())
    return [(slot, strip_slot_tags(value)) for slot, value in _SLOT.findall(text)]


def parse_slot_column(value: str) -> list[tuple[str, str]]:
    """(slot type, value) pairs of the built-in corpus' ``slots`` column (``a=X Y;b=Z``).

    Example
    -------
    >>> parse_slot_column("movie_name=NIGHT TRAIN;location_name=THE PLAZA THEATRE")
    [('movie_name', 'NIGHT TRAIN'), ('location_name', 'THE PLAZA THEATRE')]
    >>> parse_slot_column("")
    []
    """
    pairs = []
    for item in filter(None, (part.strip() for part in str(value).split(";"))):
        slot, sep, words = item.partition("=")
        if not sep:
            raise ValueError(f"slot {item!r} has no '=' (expected 'type=value')")
        pairs.append((slot, words))
    return pairs


def _slot_dict(text: str) -> dict[str, list[str]]:
    slots = defaultdict(list)
    for slot, value in parse_slots(text):
        slots[slot].append(value)
    return dict(slots)


def char_edit_distance(hyp: str, ref: str) -> int:
    """Levenshtein distance between two strings, in characters.

    Example
    -------
    >>> char_edit_distance("NIGHT TRAN", "NIGHT TRAIN"), char_edit_distance("", "ABC")
    (1, 3)
    """
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, start=1):
        current = [i]
        for j, r in enumerate(ref, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


def _check_pairs(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses for {len(refs)} references")
    if not refs:
        raise ValueError("no utterances to score")


def slot_type_f1(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over utterances of the F1 between hypothesis and reference slot-type sets.

    Example
    -------
    >>> slot_type_f1(["PLAY B-genre JAZZ E-genre"], ["PLAY SOMETHING"])
    0.0
    >>> slot_type_f1(["PLAY SOMETHING"], ["PLAY SOMETHING"])
    1.0
    """
    _check_pairs(hyps, refs)
    scores = []
    for hyp, ref in zip(hyps, refs):
        hyp_types, ref_types = set(_slot_dict(hyp)), set(_slot_dict(ref))
        if not hyp_types or not ref_types:
            scores.append(float(hyp_types == ref_types))
            continue
        common = len(hyp_types & ref_types)
        precision, recall = common / len(hyp_types), common / len(ref_types)
        total = precision + recall
        scores.append(2 * precision * recall / total if total > 0 else 0.0)
    return sum(scores) / len(scores)


def slot_value_cer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Character error rate of the reference slot values against the matched hypothesis ones.

    Returns 0.0 when the references have no slot at all.

    Example
    -------
    >>> slot_value_cer(["GO TO B-city PARIS E-city"], ["GO TO B-city PARIS E-city"])
    0.0
    >>> slot_value_cer(["GO TO PARIS"], ["GO TO B-city PARIS E-city"])
    1.0
    """
    _check_pairs(hyps, refs)
    errors, length = 0, 0
    for hyp, ref in zip(hyps, refs):
        hyp_slots = _slot_dict(hyp)
        for slot, values in _slot_dict(ref).items():
            for value in values:
                candidates = hyp_slots.get(slot, [""])
                errors += min(char_edit_distance(c, value) for c in candidates)
                length += len(value)
    return errors / length if length else 0.0


# ----------------------------------------------------------------------------- diarization
def read_rttm(path) -> dict[str, list[tuple[float, float, str]]]:
    """Turns of an RTTM file: recording id → [(start, end, speaker), ...] in seconds.

    Reads ``SPEAKER <file> <channel> <onset> <duration> <NA> <NA> <speaker> ...`` lines, the
    format of the built-in corpus' ``sd/<split>.rttm`` and per-mixture ``.rttm`` files.
    """
    turns = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        onset, duration = float(fields[3]), float(fields[4])
        turns[fields[1]].append((onset, onset + duration, fields[7]))
    return dict(turns)


def turns_to_annotation(turns: Iterable[tuple[float, float, str]], *, uri: str | None = None):
    """A ``pyannote.core.Annotation`` of (start, end, speaker) turns.

    Example
    -------
    >>> sorted(turns_to_annotation([(0.0, 1.5, "a"), (1.0, 2.0, "b")]).labels())
    ['a', 'b']
    """
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for track, (start, end, speaker) in enumerate(turns):
        if end > start:
            annotation[Segment(float(start), float(end)), track] = speaker
    return annotation


def activity_to_annotation(
    activity, *, frame_rate: float, speakers: Sequence[str] | None = None, uri: str | None = None
):
    """A ``pyannote.core.Annotation`` of frame-level speaker activity.

    Arguments
    ---------
    activity : array-like (frames, speakers)
        1 (or True) where the speaker talks; frame ``k`` covers ``[k, k + 1) / frame_rate``.
    frame_rate : float
        Frames per second.
    speakers : sequence of str, optional
        Column labels (``"0"``, ``"1"``, ... by default).
    uri : str, optional
        Recording id.

    Example
    -------
    >>> annotation = activity_to_annotation([[1, 0], [1, 1], [0, 1]], frame_rate=10.0)
    >>> [(round(s.start, 3), round(s.end, 3), label) for s, _, label in annotation.itertracks(
    ...     yield_label=True)]
    [(0.0, 0.2, '0'), (0.1, 0.3, '1')]
    """
    activity = np.asarray(activity, dtype=bool)
    if activity.ndim != 2:
        raise ValueError(f"activity must be (frames, speakers), got shape {activity.shape}")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
    speakers = [str(k) for k in range(activity.shape[1])] if speakers is None else list(speakers)
    if len(speakers) != activity.shape[1]:
        raise ValueError(f"{len(speakers)} speaker labels for {activity.shape[1]} columns")
    turns = []
    for column, speaker in zip(activity.T, speakers):
        edges = np.diff(np.concatenate([[0], column.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        turns += [(s / frame_rate, e / frame_rate, speaker) for s, e in zip(starts, ends)]
    return turns_to_annotation(turns, uri=uri)


def diarization_error_rate(
    references: Mapping,
    hypotheses: Mapping,
    *,
    durations: Mapping[str, float] | None = None,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> dict[str, float]:
    """DER over recordings (pooled: total errors / total reference speech), and its parts.

    Arguments
    ---------
    references, hypotheses : mapping of recording id → ``pyannote.core.Annotation``
        Every reference needs a hypothesis (an empty ``Annotation`` when nothing is found).
    durations : mapping of recording id → seconds, optional
        Scored region ``[0, duration]`` of each recording; by default the extent of reference
        and hypothesis together (pyannote's approximation).
    collar : float
        Seconds around reference boundaries left unscored (pyannote: ``collar / 2`` each
        side). SUPERB: 0.
    skip_overlap : bool
        Leave overlapped reference speech unscored. SUPERB: False.

    Returns
    -------
    dict
        ``der`` (a fraction, not percent), ``missed``, ``false_alarm``, ``confusion`` and
        ``total`` (seconds).

    Example
    -------
    >>> ref = {"m": turns_to_annotation([(0.0, 2.0, "a"), (1.0, 3.0, "b")])}
    >>> hyp = {"m": activity_to_annotation([[1, 0]] * 20 + [[0, 1]] * 10, frame_rate=10.0)}
    >>> {k: round(v, 6) for k, v in diarization_error_rate(ref, hyp).items()}
    {'der': 0.25, 'missed': 1.0, 'false_alarm': 0.0, 'confusion': 0.0, 'total': 4.0}
    """
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    missing = sorted(set(references) - set(hypotheses))
    if missing:
        raise KeyError(f"no hypothesis for recordings {missing[:5]}")
    if not references:
        raise ValueError("no recordings to score")
    metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    parts = {"missed": 0.0, "false_alarm": 0.0, "confusion": 0.0, "total": 0.0}
    names = {
        "missed": "missed detection",
        "false_alarm": "false alarm",
        "confusion": "confusion",
        "total": "total",
    }
    for uri, reference in references.items():
        hypothesis = hypotheses[uri]
        if durations is not None:
            end = float(durations[uri])
        else:
            extent = reference.get_timeline().union(hypothesis.get_timeline()).extent()
            end = max(extent.end, 0.0)
        uem = Timeline([Segment(0.0, end)], uri=uri)
        detail = metric(reference, hypothesis, uem=uem, detailed=True)
        for key, name in names.items():
            parts[key] += float(detail[name])
    if parts["total"] <= 0.0:
        raise ValueError("the references hold no speech")
    errors = parts["missed"] + parts["false_alarm"] + parts["confusion"]
    return {"der": errors / parts["total"], **parts}
