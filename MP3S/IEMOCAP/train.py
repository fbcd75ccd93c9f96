#!/usr/bin/env python3
"""MP3S IEMOCAP emotion (neu, hap, sad, ang): cross-validation folds that leave one session
(or one speaker) out; mean test accuracy over the folds run.

Usage: python MP3S/IEMOCAP/train.py MP3S/IEMOCAP/hparams/meanpool_linear.yaml \
    [--encoder=PATH] [--data_folder=/path/to/IEMOCAP_full_release --folds=all] [--fold_by=speaker]
"""

import statistics
import sys
from pathlib import Path

from speechbrain_ext.mp3s import recipe
from speechbrain_ext.mp3s.brains import ClassificationBrain
from speechbrain_ext.mp3s.tasks import get_task, resolve_folds, write_fold_manifests

TASK = get_task("IEMOCAP")


def run_fold(hparams, run_opts, manifests, fold):
    folder = Path(hparams["output_folder"]) / f"fold_{fold}"
    hparams = {**hparams, "save_folder": str(folder / "save"), "train_log": str(folder / "log.txt")}
    fold_manifests = write_fold_manifests(
        manifests,
        folder / "manifests",
        fold_by=hparams["fold_by"],
        fold=fold,
        dev_percent=hparams["dev_percent"],
    )
    featurizer = recipe.build_featurizer(hparams)  # fresh layer weights (and encoder) per fold
    datasets = recipe.feature_datasets(
        fold_manifests, featurizer, hparams, device=run_opts.get("device", "cpu")
    )
    classes = recipe.add_class_targets(datasets, TASK.label)
    recipe.set_outputs(datasets, hparams, "target")
    probe = recipe.make_probe(hparams, featurizer, len(classes))
    brain = ClassificationBrain(
        featurizer=featurizer, probe=probe, hparams=hparams, run_opts=run_opts
    )
    brain.train_probe(datasets)
    return brain.test(datasets["test"])["accuracy"], featurizer.layer_weights()


def main(argv=None):
    hparams, run_opts = recipe.load_recipe(argv, recipe_file=__file__)
    manifests = recipe.recipe_manifests(hparams, TASK)
    folds = resolve_folds(hparams["folds"], manifests, fold_by=hparams["fold_by"])
    accuracies, weights = {}, []
    for fold in folds:
        accuracies[fold], fold_weights = run_fold(hparams, run_opts, manifests, fold)
        weights.append(fold_weights)
    return recipe.write_results(
        hparams,
        TASK,
        value=statistics.mean(accuracies.values()),
        layer_weights=[statistics.mean(w) for w in zip(*weights)],
        fold_by=hparams["fold_by"],
        fold_accuracy=accuracies,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
