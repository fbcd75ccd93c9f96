#!/usr/bin/env python3
"""BEST-RQ pretraining with any token mixer (Study B, arXiv 2409.02596).

Run from this folder:

    python train.py hparams/bestrq_fastformer.yaml [--key=value ...]
    python train.py hparams/cpu.yaml                                 # the CPU-sized main job
    torchrun --nproc_per_node=2 train.py hparams/bestrq_mhsa.yaml   # DDP

Without ``--data_folder`` the built-in corpus is generated on first use; with
``--data_folder=/path/to/LibriSpeech`` the LibriSpeech splits are prepared.
The model and objective live in ``speechbrain_ext.ssl``, and so does what every SSL
recipe shares (arguments, manifests, data pipeline, training loop, proof of learning:
``speechbrain_ext.ssl.training``); this file holds the wiring. The proof of learning
(held-out masked-prediction accuracy beside two baselines) goes to
``<output_folder>/results.{json,md}``.
"""

import logging
import sys
from pathlib import Path

from speechbrain.utils.distributed import if_main_process

from speechbrain_ext.ssl.evaluate import proof_of_learning
from speechbrain_ext.ssl.export import save_model_config
from speechbrain_ext.ssl.training import (
    SSLBrain,
    check_ddp_parameters,
    dataio_prepare,
    evaluation_batches,
    prepare_manifests,
    setup_recipe,
    shutdown_distributed,
    write_results,
)

logger = logging.getLogger(__name__)

DEFAULT_BUILTIN_FOLDER = Path(__file__).resolve().parents[2] / "data" / "builtin"


def main(argv):
    hparams, run_opts, _ = setup_recipe(argv)
    output_folder = Path(hparams["output_folder"])
    manifests = prepare_manifests(hparams, default_builtin_folder=DEFAULT_BUILTIN_FOLDER)
    datasets, samplers = dataio_prepare(hparams, manifests)

    model = hparams["modules"]["model"]
    if if_main_process():
        save_model_config(model, output_folder)  # all load_ssl_encoder needs besides weights
    brain = SSLBrain(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.sample_rate = model.encoder.features.sample_rate
    logger.info(
        "BEST-RQ %s: %.2f M parameters, %d representations of width %d",
        model.config["encoder"],
        sum(p.numel() for p in model.parameters()) / 1e6,
        model.encoder.num_layers,
        model.encoder.hidden_size,
    )
    brain.fit_splits(datasets, samplers, num_workers=hparams["num_workers"])
    check_ddp_parameters(model, output_folder)

    if if_main_process():
        results = proof_of_learning(
            model,
            evaluation_batches(brain, datasets["test"], samplers["test"]),
            train_batches=evaluation_batches(brain, datasets["train"], samplers["train"]),
            seed=hparams["eval_seed"],
            max_train_utterances=hparams["majority_max_utterances"],
            max_batches=brain.debug_batches if brain.debug else None,
        )
        results["optimizer_steps"] = brain.optimizer_step
        results["test_manifest"] = str(manifests["test"])
        table = write_results(
            output_folder,
            results,
            title="BEST-RQ masked-prediction accuracy on held-out speakers",
            description=(
                f"Model: `{model.config['encoder']}`, {brain.optimizer_step} optimiser steps; "
                f"test set `{manifests['test']}`."
            ),
        )
        print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
    shutdown_distributed()  # not on an exception: the other ranks may never reach the barrier
