"""The kinds of downstream task: one engine function per kind, registered by yaml name.

A kind trains a probe on one set of split manifests and scores it on the test split:
``run_<kind>(task, hparams, run_opts, *, manifests) -> {"value", "layer_weights", ...}``
(``value`` is the test ``task.metric``; any other key is recorded in ``results.json``).
Everything a task adds is read from its :class:`~speechbrain_ext.downstream.task.Task`
definition (target column, metric) and its yaml, so a new task of an existing kind is a
definition and a yaml; a new kind is one function here, registered with ``@KINDS.register``.
:func:`~speechbrain_ext.downstream.engine.run_task` wraps the kind in the task's protocol
(one set of splits, or cross-validation folds).

Example
-------
>>> KINDS.names()
['classification', 'ctc', 'diarization', 'verification']
>>> KINDS.get("regression")
Traceback (most recent call last):
...
KeyError: "unknown task kind 'regression'; valid names: classification, ctc, diarization, ..."

A kind with its own Brain and scoring lives in a module of its own, imported at the bottom of
this file so that the registry is complete whenever the engine is imported: ``diarization``
(:mod:`~speechbrain_ext.downstream.diarization`).
"""

from speechbrain_ext.data.manifest import read_manifest, read_table
from speechbrain_ext.downstream import pipeline
from speechbrain_ext.downstream.brains import ClassificationBrain, CTCBrain, VerificationBrain
from speechbrain_ext.downstream.task import Task
from speechbrain_ext.downstream.tokenizers import build_tokenizer
from speechbrain_ext.registry import Registry

KINDS = Registry("task kind")


def _features(task: Task, hparams: dict, run_opts: dict, manifests: dict):
    featurizer = pipeline.build_featurizer(hparams)
    datasets = pipeline.feature_datasets(
        manifests, featurizer, hparams, device=run_opts.get("device", "cpu")
    )
    return featurizer, datasets


@KINDS.register("ctc")
def run_ctc(task: Task, hparams: dict, run_opts: dict, *, manifests: dict) -> dict:
    """CTC probe over the characters (or BPE units) of column ``task.label``; test WER.

    Yaml keys: ``tokenizer`` (``char`` or ``bpe``) and ``vocab_size`` (BPE only).
    """
    featurizer, datasets = _features(task, hparams, run_opts, manifests)
    texts = [row[task.label] for row in read_manifest(manifests["train"])]
    tokenizer = build_tokenizer(
        hparams["tokenizer"],
        texts,
        save_folder=hparams["save_folder"],
        vocab_size=hparams["vocab_size"],
    )
    pipeline.add_ctc_targets(datasets, tokenizer, task.label)
    pipeline.set_outputs(datasets, hparams, "tokens", task.label)
    probe = pipeline.make_probe(hparams, featurizer, tokenizer.num_outputs)
    brain = CTCBrain(
        tokenizer=tokenizer, featurizer=featurizer, probe=probe, hparams=hparams, run_opts=run_opts
    )
    brain.train_probe(datasets)
    stats = brain.test(datasets["test"])
    return {
        "value": stats[task.metric],
        "layer_weights": featurizer.layer_weights(),
        "test_stats": stats,
    }


@KINDS.register("classification")
def run_classification(task: Task, hparams: dict, run_opts: dict, *, manifests: dict) -> dict:
    """Utterance probe over the classes of column ``task.label``; test accuracy."""
    featurizer, datasets = _features(task, hparams, run_opts, manifests)
    classes = pipeline.add_class_targets(datasets, task.label)
    pipeline.set_outputs(datasets, hparams, "target")
    probe = pipeline.make_probe(hparams, featurizer, len(classes))
    brain = ClassificationBrain(
        featurizer=featurizer, probe=probe, hparams=hparams, run_opts=run_opts
    )
    brain.train_probe(datasets)
    stats = brain.test(datasets["test"])
    return {
        "value": stats[task.metric],
        "layer_weights": featurizer.layer_weights(),
        "test_stats": stats,
    }


@KINDS.register("verification")
def run_verification(task: Task, hparams: dict, run_opts: dict, *, manifests: dict) -> dict:
    """Utterance probe trained to classify the training speakers (column ``task.label``);
    cosine scoring of ``manifests["trials"]`` (``label,enrol_id,test_id``); test EER.
    """
    featurizer, datasets = _features(task, hparams, run_opts, manifests)
    speakers = pipeline.add_class_targets(datasets, task.label, fit_on=("train",))
    pipeline.set_outputs({"train": datasets["train"]}, hparams, "target")
    pipeline.set_outputs({"dev": datasets["dev"]}, hparams, "spk_id")  # VerificationBrain reads it
    pipeline.set_outputs({"test": datasets["test"]}, hparams)
    probe = pipeline.make_probe(hparams, featurizer, len(speakers))
    brain = VerificationBrain(
        featurizer=featurizer, probe=probe, hparams=hparams, run_opts=run_opts
    )
    brain.train_probe(datasets)
    trials = [(r["label"], r["enrol_id"], r["test_id"]) for r in read_table(manifests["trials"])]
    eer = brain.verify(datasets["test"], trials)
    return {"value": eer, "layer_weights": featurizer.layer_weights(), "trials": len(trials)}


from speechbrain_ext.downstream import diarization  # noqa: E402, F401  (registers "diarization")
