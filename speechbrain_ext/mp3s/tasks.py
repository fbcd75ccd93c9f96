"""The five MP3S tasks: where their manifests come from, what they predict, how they are scored.

Every task runs on the built-in corpus by default (its manifests stand in for the real corpus)
or on the real corpus when a ``data_folder`` is given, through that corpus' preparer.

====================  ==================  ===========  ==============  ================
task                  built-in manifests  label        kind            metric
====================  ==================  ===========  ==============  ================
``LibriSpeech``       ``librispeech``     ``wrd``      CTC, chars      WER (lower)
``CommonVoice``       ``cv_cy``/``cv_eu`` ``wrd``      CTC, chars/BPE  WER (lower)
``VoxCeleb1``         ``asv``             ``spk_id``   verification    EER (lower)
``SLURP``             ``slurp``           ``scenario`` classification  accuracy (higher)
``IEMOCAP``           ``er``              ``emo``      classification  accuracy (higher)
====================  ==================  ===========  ==============  ================

Example
-------
>>> get_task("SLURP").metric, get_task("SLURP").probes
('accuracy', ('meanpool_linear', 'bilstm_pool'))
>>> list_tasks()
['LibriSpeech', 'CommonVoice', 'VoxCeleb1', 'SLURP', 'IEMOCAP']
>>> get_task("TIMIT")
Traceback (most recent call last):
...
KeyError: "unknown task 'TIMIT'; valid names: ..."
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speechbrain_ext.data.manifest import read_manifest, write_manifest
from speechbrain_ext.registry import Registry

TASKS = Registry("task")
SPLITS = ("train", "dev", "test")
FOLD_COLUMNS = {"session": "session", "speaker": "spk_id"}


@dataclass(frozen=True)
class Task:
    """One MP3S task.

    Attributes
    ----------
    name : str
        Task name, also the recipe folder ``MP3S/<name>/``.
    kind : str
        ``"ctc"``, ``"classification"`` or ``"verification"``.
    builtin : str
        Manifest folder of the built-in corpus (``{language}`` is filled in for CommonVoice).
    label : str
        Manifest column holding the target.
    metric : str
        ``"WER"``, ``"EER"`` or ``"accuracy"``.
    higher_is_better : bool
        Direction of the metric.
    probes : tuple of str
        Probes the recipe ships (``hparams/<probe>.yaml``); the first is the runner's default.
    prepare : callable
        ``prepare(data_folder, save_folder, **options) -> {"train", "dev", "test", ...: Path}``.
    languages : tuple of str
        Languages of the built-in corpus the recipe takes through its ``language`` key (empty:
        a task without that key).
    """

    name: str
    kind: str
    builtin: str
    label: str
    metric: str
    higher_is_better: bool
    probes: tuple
    prepare: Callable
    languages: tuple = ()


def list_tasks() -> list[str]:
    """Task names in the benchmark's order."""
    return list(TASK_ORDER)


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name`` (``KeyError`` lists the valid names)."""
    return TASKS.get(name)


# ------------------------------------------------------------------ real-corpus preparation


def _prepare_librispeech(
    data_folder,
    save_folder,
    *,
    train_split="train-clean-100",
    dev_split="dev-clean",
    test_split="test-clean",
    **options,
):
    from speechbrain_ext.data.prepare.librispeech import prepare_librispeech

    splits = {"train": train_split, "dev": dev_split, "test": test_split}
    out = prepare_librispeech(data_folder, save_folder, splits=tuple(splits.values()), **options)
    return {key: out[split] for key, split in splits.items()}


def _prepare_commonvoice(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.commonvoice import prepare_commonvoice

    return prepare_commonvoice(data_folder, save_folder, **options)


def _prepare_voxceleb1(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.voxceleb1 import prepare_voxceleb1

    out = prepare_voxceleb1(data_folder, save_folder, tasks=("asv",), **options)
    return {key: out[f"asv/{key}"] for key in (*SPLITS, "trials")}


def _prepare_slurp(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.slurp import prepare_slurp

    return prepare_slurp(data_folder, save_folder, **options)


def _prepare_iemocap(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.iemocap import prepare_iemocap

    return prepare_iemocap(data_folder, save_folder, **options)


# ------------------------------------------------------------------------------ the tasks

_DEFINITIONS = (
    Task("LibriSpeech", "ctc", "librispeech", "wrd", "WER", False,
         ("bilstm_ctc", "linear_ctc"), _prepare_librispeech),
    Task("CommonVoice", "ctc", "cv_{language}", "wrd", "WER", False,
         ("bilstm_ctc", "linear_ctc"), _prepare_commonvoice, languages=("cy", "eu")),
    Task("VoxCeleb1", "verification", "asv", "spk_id", "EER", False,
         ("xvector", "ecapa"), _prepare_voxceleb1),
    Task("SLURP", "classification", "slurp", "scenario", "accuracy", True,
         ("meanpool_linear", "bilstm_pool"), _prepare_slurp),
    Task("IEMOCAP", "classification", "er", "emo", "accuracy", True,
         ("meanpool_linear", "ecapa"), _prepare_iemocap),
)  # fmt: skip
TASK_ORDER = tuple(task.name for task in _DEFINITIONS)
for _task in _DEFINITIONS:
    TASKS.register(_task.name)(_task)


def task_manifests(
    task: Task,
    *,
    data_folder=None,
    manifest_root=None,
    builtin_folder=None,
    save_folder=None,
    language: str = "cy",
    builtin_options: dict | None = None,
    prepare_options: dict | None = None,
) -> dict[str, Path]:
    """Manifest paths of a task: split (and ``trials`` for verification) → CSV.

    Arguments
    ---------
    task : Task
        The task.
    data_folder : str or Path, optional
        The real corpus, prepared into ``save_folder`` by the task's preparer.
    manifest_root : str or Path, optional
        Without ``data_folder``: a folder of ready manifests in the built-in corpus' layout,
        ``<manifest_root>/<task folder>/{train,dev,test}.csv`` (bring your own data,
        ``docs/manifests.md``).
    builtin_folder : str or Path, optional
        Where the built-in corpus lives (generated there on first use).
    save_folder : str or Path, optional
        Where the real corpus' manifests are written.
    language : str
        CommonVoice language of the built-in corpus (``cy`` or ``eu``).
    builtin_options : dict, optional
        Keyword arguments of ``ensure_builtin_corpus`` (size, seed).
    prepare_options : dict, optional
        Keyword arguments of the task's preparer.
    """
    if data_folder is not None:
        if save_folder is None:
            raise ValueError(f"{task.name}: a save_folder is needed to prepare {data_folder}")
        paths = task.prepare(data_folder, save_folder, **(prepare_options or {}))
    else:
        if manifest_root is None:
            if builtin_folder is None:
                raise ValueError(f"{task.name}: give a data_folder or a builtin_folder")
            from speechbrain_ext.corpus import ensure_builtin_corpus

            corpus = ensure_builtin_corpus(builtin_folder, **(builtin_options or {}))
            manifest_root = Path(corpus) / "manifests"
        folder = Path(manifest_root) / task.builtin.format(language=language)
        paths = {split: folder / f"{split}.csv" for split in SPLITS}
        if task.kind == "verification":
            paths["trials"] = folder / "trials.csv"
    missing = [str(p) for p in paths.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{task.name}: missing manifest(s): {', '.join(missing)}")
    return {key: Path(path) for key, path in paths.items()}


# ------------------------------------------------------------------------------- folds


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
