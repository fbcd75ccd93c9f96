#!/usr/bin/env python3
"""MP3S SLURP intent: scenario classification (18 classes) on an encoder's learned layer mix;
test accuracy.

Usage: python MP3S/SLURP/train.py MP3S/SLURP/hparams/meanpool_linear.yaml \
    [--encoder=PATH] [--pretrained=False] [--data_folder=/path/to/slurp]
"""

import sys

from speechbrain_ext.mp3s import recipe
from speechbrain_ext.mp3s.brains import ClassificationBrain
from speechbrain_ext.mp3s.tasks import get_task

TASK = get_task("SLURP")


def main(argv=None):
    hparams, run_opts = recipe.load_recipe(argv, recipe_file=__file__)
    manifests = recipe.recipe_manifests(hparams, TASK)
    featurizer = recipe.build_featurizer(hparams)
    datasets = recipe.feature_datasets(
        manifests, featurizer, hparams, device=run_opts.get("device", "cpu")
    )
    classes = recipe.add_class_targets(datasets, TASK.label)
    recipe.set_outputs(datasets, hparams, "target")

    probe = recipe.make_probe(hparams, featurizer, len(classes))
    brain = ClassificationBrain(
        featurizer=featurizer, probe=probe, hparams=hparams, run_opts=run_opts
    )
    brain.train_probe(datasets)
    stats = brain.test(datasets["test"])
    return recipe.write_results(
        hparams,
        TASK,
        value=stats["accuracy"],
        layer_weights=featurizer.layer_weights(),
        test_stats=stats,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
