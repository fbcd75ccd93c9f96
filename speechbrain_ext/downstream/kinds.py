"""The kinds of downstream task: one engine function per kind, registered by yaml name.

A kind trains a probe on one set of split manifests and scores it on the test split:
``run_<kind>(task, hparams, run_opts, *, manifests) -> {"value", "layer_weights", ...}``
(``value`` is the test ``task.metric``; any other key is recorded in ``results.json``).
Everything a task adds is read from its :class:`~speechbrain_ext.downstream.task.Task`
definition (target column, metric) and its yaml, so a new task of an existing kind is a
definition and a yaml; a new kind is one function here, registered with ``@KINDS.register``.
:func:`~speechbrain_ext.downstream.engine.run_task` wraps the kind in the task's protocol
(one set of splits, or cross-validation folds).

Kinds here: ``ctc`` (ASR on words, PR on phonemes), ``slot_filling`` (CTC on slot-tagged
texts), ``classification``, ``verification`` and ``qbe`` (no training: DTW per layer). Another
module may register more (``diarization``).

Example
-------
>>> {"classification", "ctc", "diarization", "qbe", "slot_filling", "verification"} <= set(
...     KINDS.names()
... )
True
>>> KINDS.get("regression")
Traceback (most recent call last):
...
KeyError: "unknown task kind 'regression'; valid names: classification, ctc, ..."

A kind with its own Brain and scoring lives in a module of its own, imported at the bottom of
this file so that the registry is complete whenever the engine is imported: ``diarization``
(:mod:`~speechbrain_ext.downstream.diarization`).
"""

from speechbrain_ext.data.manifest import read_manifest, read_table
from speechbrain_ext.downstream import pipeline
from speechbrain_ext.downstream.brains import (
    ClassificationBrain,
    CTCBrain,
    SlotFillingBrain,
    VerificationBrain,
)
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


def _run_ctc(task: Task, hparams: dict, run_opts: dict, manifests: dict, brain_class) -> dict:
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
    brain = brain_class(
        tokenizer=tokenizer, label=task.label, metric=task.metric, featurizer=featurizer,
        probe=probe, hparams=hparams, run_opts=run_opts,
    )  # fmt: skip
    brain.train_probe(datasets)
    stats = brain.test(datasets["test"])
    return {
        "value": stats[task.metric],
        "layer_weights": featurizer.layer_weights(),
        "test_stats": stats,
    }


@KINDS.register("ctc")
def run_ctc(task: Task, hparams: dict, run_opts: dict, *, manifests: dict) -> dict:
    """CTC probe over the units of column ``task.label``; the test error rate ``task.metric``
    over space-separated units: ``WER`` (words; the CER beside it) or ``PER`` (the column holds
    space-separated phonemes, ``tokenizer: phoneme``).

    Yaml keys: ``tokenizer`` (``char``, ``phoneme`` or ``bpe``) and ``vocab_size`` (BPE only).
    """
    return _run_ctc(task, hparams, run_opts, manifests, CTCBrain)


@KINDS.register("slot_filling")
def run_slot_filling(task: Task, hparams: dict, run_opts: dict, *, manifests: dict) -> dict:
    """CTC probe over the characters and whole slot tags of column ``task.label`` (tagged
    texts, ``tokenizer: slot``); test ``slot_type_f1`` with ``slot_value_cer`` beside it.
    """
    return _run_ctc(task, hparams, run_opts, manifests, SlotFillingBrain)


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


@KINDS.register("qbe")
def run_qbe(task: Task, hparams: dict, run_opts: dict, *, manifests: dict) -> dict:
    """Query-by-example without training (:mod:`speechbrain_ext.superb.qbe`): every layer's
    subsequence-DTW scores of the queries (``manifests["queries"]``) in the documents
    (``["docs"]``), the layer with the best MTWV on the dev queries, its test MTWV (the value)
    and MAP (``test_stats``). The layer weights are that layer as a one-hot.

    Dev and test queries: the ``split`` column of the queries (``dev``/``test``) when it has
    one (the real QUESST), else even and odd positions (the built-in corpus). Yaml keys:
    ``beta`` (the TWV's false-alarm weight), ``min_query_frames``, ``dtw_batch_size``; the
    layer features come from the cache (``cache_folder``, ``cache_batch_size``).
    """
    import numpy as np

    from speechbrain_ext.downstream.cache import LayerFeatureCache, encoder_checksum
    from speechbrain_ext.superb.metrics import read_qbe_ground_truth
    from speechbrain_ext.superb.qbe import qbe_scores, select_layer, split_queries

    device = run_opts.get("device", "cpu")
    featurizer = pipeline.build_featurizer(hparams).to(device)
    cache = LayerFeatureCache(hparams["cache_folder"], key=encoder_checksum(featurizer.encoder))
    rows = {}
    for name in ("queries", "docs"):
        rows[name] = {row["ID"]: row for row in read_manifest(manifests[name])}
        cache.fill(
            featurizer, list(rows[name].values()), batch_size=hparams["cache_batch_size"],
            device=device,
        )  # fmt: skip
    query_ids, doc_ids, targets = read_qbe_ground_truth(manifests["ground_truth"])
    missing = [u for u in query_ids if u not in rows["queries"]]
    missing += [u for u in doc_ids if u not in rows["docs"]]
    if missing:
        raise KeyError(
            f"the ground truth names utterances absent from the manifests: {missing[:5]}"
        )

    def layers(name, ids):  # ids → per layer, per utterance (frames, dim)
        feats = [cache.load(u, rows[name][u]["wav"]).float() for u in ids]  # (frames, L, dim)
        return [[f[:, layer] for f in feats] for layer in range(featurizer.num_layers)]

    queries, docs = layers("queries", query_ids), layers("docs", doc_ids)
    scores = [
        qbe_scores(
            q, d, min_query_frames=hparams["min_query_frames"],
            batch_size=hparams["dtw_batch_size"],
        )
        for q, d in zip(queries, docs)
    ]  # fmt: skip
    parts = [rows["queries"][u].get("split", "") for u in query_ids]
    if all(part in ("dev", "test") for part in parts):
        dev = np.array([i for i, part in enumerate(parts) if part == "dev"])
        test = np.array([i for i, part in enumerate(parts) if part == "test"])
    else:
        dev, test = split_queries(len(query_ids))
    chosen = select_layer(scores, targets, dev=dev, test=test, beta=hparams["beta"])
    weights = [float(layer == chosen["layer"]) for layer in range(featurizer.num_layers)]
    return {
        "value": chosen["test_mtwv"],
        "layer_weights": weights,
        "test_stats": {"MTWV": chosen["test_mtwv"], "MAP": chosen["test_map"]},
        "layer": chosen["layer"],
        "dev_mtwv": chosen["dev_mtwv"],
        "queries": {"dev": len(dev), "test": len(test)},
        "documents": len(doc_ids),
    }


from speechbrain_ext.downstream import diarization  # noqa: E402, F401  (registers "diarization")
