"""Cross-validation folds: pool a task's utterances and leave one group (a session, a speaker)
out, for tasks whose protocol is ``"folds"`` (MP3S IEMOCAP).
"""

import zlib
from pathlib import Path

from speechbrain_ext.data.manifest import read_manifest, write_manifest
from speechbrain_ext.downstream.task import SPLITS

FOLD_COLUMNS = {"session": "session", "speaker": "spk_id"}


def fold_groups(rows, *, fold_by: str = "session") -> list[str]:
    """The sorted groups (sessions or speakers) that define the cross-validation folds.

    Example
    -------
    >>> rows = [{"session": "2", "spk_id": "Ses02F"}, {"session": "1", "spk_id": "Ses01M"}]
    >>> fold_groups(rows), fold_groups(rows, fold_by="speaker")
    (['1', '2'], ['Ses01M', 'Ses02F'])
    """
    if fold_by not in FOLD_COLUMNS:
        raise ValueError(f"unknown fold_by {fold_by!r}; valid: {', '.join(FOLD_COLUMNS)}")
    column = FOLD_COLUMNS[fold_by]
    return sorted({str(row[column]) for row in rows}, key=lambda g: (len(g), g))


def leave_one_group_out(rows, *, fold_by: str, test_group: str, dev_percent: float = 10.0):
    """Split rows into (train, dev, test): ``test`` holds ``test_group`` (a session or a
    speaker); ``dev_percent`` % of the other rows, chosen by a hash of the ID (deterministic),
    is ``dev``.

    Example
    -------
    >>> rows = [{"ID": f"u{i}", "session": str(1 + i % 5)} for i in range(50)]
    >>> train, dev, test = leave_one_group_out(rows, fold_by="session", test_group="2")
    >>> len(test), len(train) + len(dev), {r["session"] for r in test}
    (10, 40, {'2'})
    """
    column = FOLD_COLUMNS[fold_by]
    train, dev, test = [], [], []
    for row in rows:
        if str(row[column]) == str(test_group):
            test.append(row)
        elif zlib.crc32(str(row["ID"]).encode()) % 10000 < dev_percent * 100:
            dev.append(row)
        else:
            train.append(row)
    if not test:
        raise ValueError(f"no utterance of {fold_by} {test_group!r}")
    if not train or not dev:
        raise ValueError(f"fold {fold_by}={test_group}: empty train or dev split")
    return train, dev, test


def pooled_rows(manifests: dict) -> list[dict]:
    """Every utterance of a task: ``manifests["all"]`` when present (the IEMOCAP preparer
    writes it), else the union of ``train``, ``dev`` and ``test``.
    """
    sources = [manifests["all"]] if "all" in manifests else [manifests[s] for s in SPLITS]
    return [row for source in sources for row in read_manifest(source)]


def resolve_folds(folds, manifests: dict, *, fold_by: str) -> list[int]:
    """1-based fold numbers: ``folds`` as given, or every fold for ``"all"``.

    Example
    -------
    >>> resolve_folds([2, 3], {}, fold_by="session")
    [2, 3]
    """
    if folds == "all":
        return list(range(1, len(fold_groups(pooled_rows(manifests), fold_by=fold_by)) + 1))
    if isinstance(folds, int):
        folds = [folds]
    if not folds or not all(isinstance(f, int) and f >= 1 for f in folds):
        raise ValueError(f"folds must be 'all' or a list of fold numbers >= 1, got {folds!r}")
    return list(folds)


def write_fold_manifests(
    manifests: dict, folder, *, fold_by: str, fold: int, dev_percent: float = 10.0
) -> dict[str, Path]:
    """Pool a task's manifests (:func:`pooled_rows`) and write the ``fold``-th (1-based)
    leave-one-group-out split; returns split → path under ``folder``.
    """
    rows = pooled_rows(manifests)
    groups = fold_groups(rows, fold_by=fold_by)
    if not 1 <= fold <= len(groups):
        raise ValueError(f"fold {fold} does not exist: {len(groups)} {fold_by} folds ({groups})")
    splits = leave_one_group_out(
        rows, fold_by=fold_by, test_group=groups[fold - 1], dev_percent=dev_percent
    )
    extra = [c for c in rows[0] if c not in ("ID", "duration", "wav", "spk_id")]
    return {
        name: write_manifest(Path(folder) / f"{name}.csv", part, extra_columns=extra)
        for name, part in zip(SPLITS, splits)
    }
