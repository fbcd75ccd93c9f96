#!/usr/bin/env python3
"""MP3S VoxCeleb1 speaker verification: an x-vector or ECAPA probe trained to classify the
training speakers (AAM-softmax) on an encoder's learned layer mix; cosine scoring of the
trials; test EER.

Usage: python MP3S/VoxCeleb1/train.py MP3S/VoxCeleb1/hparams/xvector.yaml \
    [--encoder=PATH] [--pretrained=False] [--data_folder=/path/to/VoxCeleb1]
"""

import sys

from speechbrain_ext.data.manifest import read_table
from speechbrain_ext.mp3s import recipe
from speechbrain_ext.mp3s.brains import VerificationBrain
from speechbrain_ext.mp3s.tasks import get_task

TASK = get_task("VoxCeleb1")


def main(argv=None):
    hparams, run_opts = recipe.load_recipe(argv, recipe_file=__file__)
    manifests = recipe.recipe_manifests(hparams, TASK)
    featurizer = recipe.build_featurizer(hparams)
    datasets = recipe.feature_datasets(
        manifests, featurizer, hparams, device=run_opts.get("device", "cpu")
    )
    speakers = recipe.add_class_targets(datasets, TASK.label, fit_on=("train",))
    recipe.set_outputs({"train": datasets["train"]}, hparams, "target")
    recipe.set_outputs({"dev": datasets["dev"]}, hparams, "spk_id")
    recipe.set_outputs({"test": datasets["test"]}, hparams)

    probe = recipe.make_probe(hparams, featurizer, len(speakers))
    brain = VerificationBrain(
        featurizer=featurizer, probe=probe, hparams=hparams, run_opts=run_opts
    )
    brain.train_probe(datasets)
    trials = [(r["label"], r["enrol_id"], r["test_id"]) for r in read_table(manifests["trials"])]
    eer = brain.verify(datasets["test"], trials)
    return recipe.write_results(
        hparams, TASK, value=eer, layer_weights=featurizer.layer_weights(), trials=len(trials)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
