#!/usr/bin/env python3
"""MP3S CommonVoice low-resource ASR (Welsh or Basque): a CTC probe over a small BPE on an
encoder's learned layer mix; test WER.

Usage: python MP3S/CommonVoice/train.py MP3S/CommonVoice/hparams/bilstm_ctc.yaml \
    [--language=eu] [--encoder=PATH] [--pretrained=False] [--data_folder=/path/to/cv-corpus/cy]
"""

import sys

from speechbrain_ext.data.manifest import read_manifest
from speechbrain_ext.mp3s import recipe
from speechbrain_ext.mp3s.brains import CTCBrain
from speechbrain_ext.mp3s.tasks import get_task
from speechbrain_ext.mp3s.tokenizers import build_tokenizer

TASK = get_task("CommonVoice")


def main(argv=None):
    hparams, run_opts = recipe.load_recipe(argv, recipe_file=__file__)
    manifests = recipe.recipe_manifests(hparams, TASK, language=hparams["language"])
    featurizer = recipe.build_featurizer(hparams)
    datasets = recipe.feature_datasets(
        manifests, featurizer, hparams, device=run_opts.get("device", "cpu")
    )
    texts = [row["wrd"] for row in read_manifest(manifests["train"])]
    tokenizer = build_tokenizer(
        hparams["tokenizer"],
        texts,
        save_folder=hparams["save_folder"],
        vocab_size=hparams["vocab_size"],
    )
    recipe.add_ctc_targets(datasets, tokenizer)
    recipe.set_outputs(datasets, hparams, "tokens", "wrd")

    probe = recipe.make_probe(hparams, featurizer, tokenizer.num_outputs)
    brain = CTCBrain(
        tokenizer=tokenizer, featurizer=featurizer, probe=probe, hparams=hparams, run_opts=run_opts
    )
    brain.train_probe(datasets)
    stats = brain.test(datasets["test"])
    return recipe.write_results(
        hparams,
        TASK,
        value=stats["WER"],
        layer_weights=featurizer.layer_weights(),
        language=hparams["language"],
        test_stats=stats,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
