"""The downstream engine: load a task's probe yaml and run the task, with settings, not argv.

>>> hparams = load_task_hparams("mp3s/SLURP", "meanpool_linear", {"number_of_epochs": 2})
>>> hparams["probe"], hparams["number_of_epochs"], hparams["output_folder"]
('meanpool_linear', 2, 'results/MP3S/SLURP/meanpool_linear/1986')
>>> load_task_hparams("mp3s/SLURP", "meanpool_linear", {"epochs": 2})
Traceback (most recent call last):
...
ValueError: meanpool_linear.yaml: 'epochs' is not a key of meanpool_linear.yaml
>>> load_task_hparams("mp3s/SLURP", "ecapa")
Traceback (most recent call last):
...
ValueError: mp3s/SLURP has no probe 'ecapa'; its probes: meanpool_linear, bilstm_pool

:func:`run_task` then trains and scores the task (``results.json`` in ``output_folder``);
:func:`run_recipe` is a recipe folder's ``train.py``: its command line, then :func:`run_task`.
"""

import statistics
from importlib.resources import files
from pathlib import Path

import speechbrain as sb

from speechbrain_ext.downstream import pipeline
from speechbrain_ext.downstream.folds import resolve_folds, write_fold_manifests
from speechbrain_ext.downstream.kinds import KINDS
from speechbrain_ext.downstream.task import Task, get_task
from speechbrain_ext.hparams import load_recipe_hparams
from speechbrain_ext.ssl.training import manifests_fingerprint

CONFIGS = "configs"  # package data: configs/<suite>/<task>/<probe>.yaml


def task_config(task, probe: str, *, configs=None) -> Path:
    """The probe yaml of a task: ``<configs>/<task>/<probe>.yaml`` when a ``configs`` folder is
    given, else the package's ``speechbrain_ext/downstream/configs/<suite>/<task>/<probe>.yaml``.
    """
    task = get_task(task)
    if configs is not None:
        path = Path(configs) / task.name / f"{probe}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{task.key}: no probe yaml {path}")
        return path
    if probe not in task.probes:
        raise ValueError(f"{task.key} has no probe {probe!r}; its probes: {', '.join(task.probes)}")
    return Path(str(files("speechbrain_ext.downstream") / CONFIGS / task.suite / task.name)) / (
        f"{probe}.yaml"
    )


def load_task_hparams(task, probe: str, overrides: dict | None = None, *, configs=None) -> dict:
    """A task's probe yaml (:func:`task_config`) loaded with ``overrides`` (key → value).

    As for a recipe yaml (:func:`speechbrain_ext.hparams.load_recipe_hparams`), a key the yaml
    lacks is a ``ValueError``, and so is a non-number for a key whose default is a number.
    """
    return load_recipe_hparams(task_config(task, probe, configs=configs), overrides or {})[0]


def _run_folds(task: Task, kind, hparams: dict, run_opts: dict, manifests: dict) -> dict:
    """The ``"folds"`` protocol: the kind on every fold (yaml keys ``folds``, ``fold_by``,
    ``dev_percent``), each in ``fold_<n>/`` with fresh layer weights; the mean test value.
    """
    folds = resolve_folds(hparams["folds"], manifests, fold_by=hparams["fold_by"])
    values, weights = {}, []
    for fold in folds:
        folder = Path(hparams["output_folder"]) / f"fold_{fold}"
        fold_hparams = {
            **hparams, "save_folder": str(folder / "save"), "train_log": str(folder / "log.txt")
        }  # fmt: skip
        fold_manifests = write_fold_manifests(
            manifests,
            folder / "manifests",
            fold_by=hparams["fold_by"],
            fold=fold,
            dev_percent=hparams["dev_percent"],
        )
        outcome = kind(task, fold_hparams, run_opts, manifests=fold_manifests)
        values[fold] = outcome["value"]
        weights.append(outcome["layer_weights"])
    return {
        "value": statistics.mean(values.values()),
        "layer_weights": [statistics.mean(w) for w in zip(*weights)],
        "fold_by": hparams["fold_by"],
        f"fold_{task.metric.lower()}": values,
    }


def run_task(task, hparams: dict, run_opts: dict | None = None) -> dict:
    """Train and score one task with its loaded yaml ``hparams``; returns ``results.json``.

    Arguments
    ---------
    task : Task or str
        The task, or ``"<suite>/<name>"``.
    hparams : dict
        Its probe yaml, loaded (:func:`load_task_hparams`); ``hparams["task"]`` must name it.
    run_opts : dict, optional
        SpeechBrain run options (``device``, ``noprogressbar``...).
    """
    task = get_task(task)
    run_opts = dict(run_opts or {})
    if hparams["task"] != task.name:
        raise ValueError(f"the yaml is task {hparams['task']!r}'s, not {task.key}'s")
    kind = KINDS.get(task.kind)
    pipeline.check_run_folder(hparams)  # before anything is written
    pipeline.setup_experiment(hparams)
    options = {"language": hparams["language"]} if task.languages else {}
    manifests = pipeline.task_split_manifests(hparams, task, **options)
    files = {name: path for name, path in manifests.items() if path and Path(path).is_file()}
    pipeline.check_run_folder(hparams, manifests=manifests_fingerprint(files))
    if task.protocol == "folds":
        outcome = _run_folds(task, kind, hparams, run_opts, manifests)
    else:
        outcome = kind(task, hparams, run_opts, manifests=manifests)
    value, layer_weights = outcome.pop("value"), outcome.pop("layer_weights")
    return pipeline.write_results(
        hparams, task, value=value, layer_weights=layer_weights, **options, **outcome
    )


def run_recipe(task, argv=None) -> dict:
    """A recipe folder's ``train.py``: ``argv`` is ``YAML [--key=value ...] [--device=...]``
    (SpeechBrain's command line; the yaml a task's probe yaml or a variant of it).
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams = load_recipe_hparams(hparams_file, overrides)[0]
    return run_task(task, hparams, run_opts)
