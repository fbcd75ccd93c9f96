"""A downstream task as a declarative definition, and the registry of every suite's tasks.

A :class:`Task` says where a task's manifests come from (the built-in corpus' folder, or the
real corpus through ``prepare``), which manifest column is the target, which kind of engine
function trains and scores it (:mod:`~speechbrain_ext.downstream.kinds`), its probes (each one
a yaml of ``configs/<suite>/<name>/``), its metric and its protocol. A suite
(``speechbrain_ext.mp3s``) registers its tasks with :func:`register_task`; the engine finds a
task by ``"<suite>/<name>"`` (:func:`get_task`), importing ``speechbrain_ext.<suite>.tasks`` on
first use, so that a task runs without its suite's command line being imported.

Example
-------
>>> task = get_task("mp3s/SLURP")
>>> task.key, task.kind, task.metric, task.probes
('mp3s/SLURP', 'classification', 'accuracy', ('meanpool_linear', 'bilstm_pool'))
>>> get_task("IEMOCAP", suite="mp3s").protocol
'folds'
>>> [task.name for task in suite_tasks("mp3s")][:2]
['LibriSpeech', 'CommonVoice']
>>> get_task("mp3s/TIMIT")
Traceback (most recent call last):
...
KeyError: "unknown mp3s task 'TIMIT'; valid names: ..."
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speechbrain_ext.registry import Registry

SPLITS = ("train", "dev", "test")
PROTOCOLS = ("splits", "folds")
_SUITES: dict[str, Registry] = {}
_ORDER: dict[str, list[str]] = {}


@dataclass(frozen=True)
class Task:
    """One downstream task of a suite.

    Attributes
    ----------
    suite : str
        The suite (``"mp3s"``); the task's probe yamls are ``configs/<suite>/<name>/``.
    name : str
        Task name, unique within its suite (also the recipe folder ``MP3S/<name>/``).
    kind : str
        The engine function that runs it (:data:`~speechbrain_ext.downstream.kinds.KINDS`):
        ``"ctc"``, ``"classification"``, ``"verification"`` or ``"diarization"``.
    builtin : str
        Manifest folder of the built-in corpus (``{language}`` is filled in from ``language``).
    label : str
        Manifest column holding the target.
    metric : str
        ``"WER"``, ``"EER"``, ``"accuracy"`` or ``"DER"``: the test statistic the kind reports.
    higher_is_better : bool
        Direction of the metric.
    probes : tuple of str
        Probes the task ships (``configs/<suite>/<name>/<probe>.yaml``); the first is the
        runner's default.
    prepare : callable
        ``prepare(data_folder, save_folder, **options) -> {"train", "dev", "test", ...: Path}``.
    languages : tuple of str
        Languages of the built-in corpus, chosen by the yaml's ``language`` key (empty: the
        task's yaml has no such key).
    protocol : str
        ``"splits"`` (train, dev, test as given) or ``"folds"`` (pool the splits and average
        leave-one-group-out folds; yaml keys ``folds``, ``fold_by``, ``dev_percent``).
    splits : tuple of str
        The utterance manifests of the task's folder (``<split>.csv``, validated before any
        training): ``train``, ``dev``, ``test``; QbE's are ``queries`` and ``docs``.
    tables : tuple of str
        Other CSVs of the folder that the kind reads (``trials`` for verification,
        ``ground_truth`` for QbE).
    secondary : str or None
        A second test statistic shown beside the metric, read from the kind's ``test_stats``
        when present (``CER`` beside a WER, ``MAP`` beside QbE's MTWV).
    """

    suite: str
    name: str
    kind: str
    builtin: str
    label: str
    metric: str
    higher_is_better: bool
    probes: tuple
    prepare: Callable
    languages: tuple = ()
    protocol: str = "splits"
    splits: tuple = SPLITS
    tables: tuple = ()
    secondary: str | None = "CER"

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"{self.key}: unknown protocol {self.protocol!r}; valid: {PROTOCOLS}")

    @property
    def key(self) -> str:
        """``"<suite>/<name>"``, the task's name for :func:`get_task`."""
        return f"{self.suite}/{self.name}"


def register_task(task: Task) -> Task:
    """Add ``task`` to its suite's registry (in order: the suite's table follows it)."""
    registry = _SUITES.setdefault(task.suite, Registry(f"{task.suite} task"))
    if task.name not in registry:
        _ORDER.setdefault(task.suite, []).append(task.name)
    registry.register(task.name)(task)
    return task


def _suite(suite: str) -> Registry:
    if suite not in _SUITES:  # a suite's definitions register themselves on import
        try:
            importlib.import_module(f"speechbrain_ext.{suite}.tasks")
        except ModuleNotFoundError as error:
            if error.name != f"speechbrain_ext.{suite}":
                raise
        if suite not in _SUITES:
            raise KeyError(f"unknown suite {suite!r}; known: {', '.join(sorted(_SUITES))}")
    return _SUITES[suite]


def get_task(task, *, suite: str | None = None) -> Task:
    """A :class:`Task` from itself, ``"<suite>/<name>"``, or ``name`` and ``suite``."""
    if isinstance(task, Task):
        return task
    if suite is None:
        suite, sep, task = str(task).partition("/")
        if not sep:
            raise KeyError(f"name a task as <suite>/<name> (e.g. mp3s/SLURP), got {suite!r}")
    return _suite(suite).get(task)


def suite_tasks(suite: str) -> list[Task]:
    """The tasks of ``suite`` in its order."""
    registry = _suite(suite)
    return [registry.get(name) for name in _ORDER[suite]]


def task_manifests(
    task: Task,
    *,
    data_folder=None,
    manifest_root=None,
    builtin_folder=None,
    save_folder=None,
    language: str | None = None,
    builtin_options: dict | None = None,
    prepare_options: dict | None = None,
) -> dict[str, Path]:
    """Manifest paths of a task: each of ``task.splits`` and ``task.tables`` → CSV.

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
    language : str, optional
        Language of the built-in corpus (a task with ``languages``; default its first).
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
        if language is None and task.languages:
            language = task.languages[0]
        folder = Path(manifest_root) / task.builtin.format(language=language)
        paths = {name: folder / f"{name}.csv" for name in (*task.splits, *task.tables)}
    missing = [str(p) for p in paths.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{task.name}: missing manifest(s): {', '.join(missing)}")
    return {key: Path(path) for key, path in paths.items()}
