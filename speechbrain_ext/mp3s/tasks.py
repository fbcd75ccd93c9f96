"""The five MP3S tasks: where their manifests come from, what they predict, how they are scored.

Each task is a :class:`~speechbrain_ext.downstream.task.Task` of suite ``"mp3s"``, run by the
downstream engine (:func:`speechbrain_ext.downstream.run_task`) with its probe yamls
``speechbrain_ext/downstream/configs/mp3s/<task>/<probe>.yaml``. Every task runs on the
built-in corpus by default (its manifests stand in for the real corpus) or on the real corpus
when a ``data_folder`` is given, through that corpus' preparer (below).

====================  ==================  ===========  ==============  ================
task                  built-in manifests  label        kind            metric
====================  ==================  ===========  ==============  ================
``LibriSpeech``       ``librispeech``     ``wrd``      CTC, chars      WER (lower)
``CommonVoice``       ``cv_cy``/``cv_eu`` ``wrd``      CTC, chars/BPE  WER (lower)
``VoxCeleb1``         ``asv``             ``spk_id``   verification    EER (lower)
``SLURP``             ``slurp``           ``scenario`` classification  accuracy (higher)
``IEMOCAP``           ``er``              ``emo``      classification  accuracy (higher)
====================  ==================  ===========  ==============  ================

IEMOCAP's protocol is ``"folds"`` (leave-one-session- or speaker-out cross-validation).

Example
-------
>>> get_task("SLURP").metric, get_task("SLURP").probes
('accuracy', ('meanpool_linear', 'bilstm_pool'))
>>> list_tasks()
['LibriSpeech', 'CommonVoice', 'VoxCeleb1', 'SLURP', 'IEMOCAP']
>>> get_task("TIMIT")
Traceback (most recent call last):
...
KeyError: "unknown mp3s task 'TIMIT'; valid names: ..."
"""

from speechbrain_ext.downstream.task import SPLITS, Task, register_task
from speechbrain_ext.downstream.task import get_task as _get_task

SUITE = "mp3s"


def list_tasks() -> list[str]:
    """Task names in the benchmark's order."""
    return list(TASK_ORDER)


def get_task(name: str) -> Task:
    """The MP3S :class:`Task` called ``name`` (``KeyError`` lists the valid names)."""
    return _get_task(name, suite=SUITE)


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

TASKS = (
    Task("mp3s", "LibriSpeech", "ctc", "librispeech", "wrd", "WER", False,
         ("bilstm_ctc", "linear_ctc", "contextnet_ctc"), _prepare_librispeech),
    Task("mp3s", "CommonVoice", "ctc", "cv_{language}", "wrd", "WER", False,
         ("bilstm_ctc", "linear_ctc"), _prepare_commonvoice, languages=("cy", "eu")),
    Task("mp3s", "VoxCeleb1", "verification", "asv", "spk_id", "EER", False,
         ("xvector", "ecapa"), _prepare_voxceleb1, tables=("trials",)),
    Task("mp3s", "SLURP", "classification", "slurp", "scenario", "accuracy", True,
         ("meanpool_linear", "bilstm_pool"), _prepare_slurp),
    Task("mp3s", "IEMOCAP", "classification", "er", "emo", "accuracy", True,
         ("meanpool_linear", "ecapa"), _prepare_iemocap, protocol="folds"),
)  # fmt: skip
TASK_ORDER = tuple(task.name for task in TASKS)
for _task in TASKS:
    register_task(_task)
