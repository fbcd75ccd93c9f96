"""The SUPERB aggregate score: each task rescaled between the fbank baseline and a reference.

As the SUPERB challenge's "SUPERB score" (Shi et al., "SUPERB @ SLT 2022: Challenge on
Generalization and Efficiency of Self-Supervised Speech Representation Learning", SLT 2022):
per task,

    score = 1000 × (metric − fbank) / (reference − fbank)

which is the same formula for a higher-is-better metric (accuracy, MTWV, slot F1) and for an
error (PER, WER, EER, DER: ``(fbank − metric) / (fbank − reference)``), so that the fbank
baseline scores 0 and the reference 1000; the aggregate is the mean over the tasks scored. The
lower anchor here is the fbank column **of the same run** (the same corpus and probe budget),
not the published fbank numbers: on the built-in corpus the published ones mean nothing. The
upper anchor is :data:`REFERENCES`, the best published SUPERB result per task.

A task is left out of the aggregate (shown as n/a) when the encoder or the fbank run failed, or
when the fbank value is already at or beyond the reference (no span to rescale: this happens
on easy built-in data); the notes under the table name the tasks left out. Scores can be
negative (worse than fbank) or above 1000 (better than the reference).

References
----------
:data:`REFERENCES` holds WavLM Large's SUPERB results as reported in the WavLM paper (Chen et
al., "WavLM: Large-Scale Self-Supervised Pre-Training for Full Stack Speech Processing",
IEEE JSTSP 2022, Table II; also on the SUPERB leaderboard): the best published system on most
SUPERB tasks. The values were transcribed from memory of that table and not checked against it
here, so treat them as approximate (QbE and SD especially); pass ``references=`` (or change the
constant) to use others. QbE's MTWV is a fraction (0.0886), not a percentage.

Example
-------
>>> task_score(60.0, fbank=20.0, reference=100.0, higher_is_better=True)
500.0
>>> task_score(10.0, fbank=30.0, reference=5.0, higher_is_better=False)
800.0
>>> task_score(10.0, fbank=100.0, reference=100.0, higher_is_better=True) is None
True
"""

import math
import statistics

from speechbrain_ext.downstream.grid import SummaryRow

REFERENCES = {
    "PR": 3.06,  # PER %, WavLM Large
    "ASR": 3.44,  # WER %
    "KS": 97.86,  # accuracy %
    "QbE": 0.0886,  # MTWV
    "SID": 95.49,  # accuracy %
    "ASV": 3.77,  # EER %
    "SD": 3.24,  # DER %
    "ER": 70.62,  # accuracy %, 5-fold mean
    "IC": 99.31,  # accuracy %
    "SF": 92.21,  # slot-type F1 % (slot-value CER 18.36)
}
"""Best published SUPERB score per task (WavLM Large, see the module docstring)."""

NAME = "SUPERB score"


def task_score(value, *, fbank, reference, higher_is_better: bool) -> float | None:
    """``1000 × (value − fbank) / (reference − fbank)``; None when there is no span (the fbank
    value at or beyond the reference) or a value is missing or not finite.
    """
    if value is None or fbank is None or not (math.isfinite(value) and math.isfinite(fbank)):
        return None
    span = reference - fbank
    if (span <= 0) if higher_is_better else (span >= 0):
        return None
    return 1000.0 * (value - fbank) / span


def superb_scores(results, *, references=None) -> tuple[dict, dict]:
    """Per encoder label: the aggregate score (or None), and the per-task scores.

    Arguments
    ---------
    results : list of RunResult
        A grid's results (:func:`speechbrain_ext.downstream.grid.run_grid`), with an ``fbank``
        column; tasks without a reference are ignored.
    references : dict, optional
        Task name → reference value (default :data:`REFERENCES`).

    Returns
    -------
    aggregate : dict
        Label → mean of its task scores (None when it has none).
    per_task : dict
        Label → {task: score or None}.
    """
    references = REFERENCES if references is None else references
    fbank = {r.task: r.value for r in results if r.variant.label == "fbank" and not r.failed}
    labels = list(dict.fromkeys(r.variant.label for r in results))
    per_task = {label: {} for label in labels}
    for r in results:
        if r.task not in references:
            continue
        per_task[r.variant.label][r.task] = task_score(
            None if r.failed else r.value,
            fbank=fbank.get(r.task),
            reference=references[r.task],
            higher_is_better=r.higher_is_better,
        )
    aggregate = {}
    for label, scores in per_task.items():
        valid = [s for s in scores.values() if s is not None]
        aggregate[label] = statistics.mean(valid) if valid else None
    return aggregate, per_task


def summarize(results, *, references=None) -> tuple[list, str]:
    """The aggregate row and its notes for the suite's table (``cli.main``'s ``summarize``)."""
    references = REFERENCES if references is None else references
    aggregate, per_task = superb_scores(results, references=references)
    tasks = list(dict.fromkeys(r.task for r in results if r.task in references))
    left_out = {
        label: [task for task in tasks if scores.get(task) is None]
        for label, scores in per_task.items()
        if label != "fbank"
    }
    notes = [
        f"{NAME}: per task 1000 × (metric − fbank) / (reference − fbank), fbank of this run as 0, "
        "the best published SUPERB result (WavLM Large) as 1000, averaged over the tasks scored; "
        "references: "
        + ", ".join(f"{task} {references[task]:g}" for task in tasks)
        + " (speechbrain_ext.superb.aggregate)."
    ]
    for label, missing in left_out.items():
        if missing and tasks:
            notes.append(f"{label}: left out {', '.join(missing)} (failed, or no fbank span).")
    row = SummaryRow(name=NAME, metric="score", values=aggregate, higher_is_better=True)
    return [row], " ".join(notes)
