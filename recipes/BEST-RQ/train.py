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

Quantization-aware training (BiT): ``--quantize=w1a1 --teacher=<FP32 output folder>`` trains a
1-bit student by distillation from the teacher into the output folder (it loads with
``load_ssl_encoder`` as the quantized encoder); ``--quantize_chain=[w1a4,w1a2,w1a1]`` runs the
stages one after another in ``<output_folder>/stage<k>_<spec>`` (``speechbrain_ext.quant``).
"""

import logging
import sys
from pathlib import Path

from speechbrain_ext.quant.stages import (
    first_batch,
    quantization_stages,
    run_stages,
    write_stages_summary,
)
from speechbrain_ext.ssl.training import (
    SSLBrain,
    dataio_prepare,
    prepare_manifests,
    setup_recipe,
    shutdown_distributed,
    train_in_folder,
)

logger = logging.getLogger(__name__)

DEFAULT_BUILTIN_FOLDER = Path(__file__).resolve().parents[2] / "data" / "builtin"


def train(hparams, run_opts, model, folder: Path, datasets, samplers, manifests) -> dict | None:
    """Train ``model`` (a BEST-RQ model, or a student in its DistillationModel) into ``folder``
    and write the proof of learning there; returns the results (main process).
    """
    paths = {}
    if folder == Path(hparams["output_folder"]):
        paths = {"save_folder": hparams["save_folder"], "train_log": hparams["train_log"]}
    return train_in_folder(
        SSLBrain,
        hparams,
        run_opts,
        model,
        folder,
        datasets,
        samplers,
        title="BEST-RQ masked-prediction accuracy on held-out speakers",
        extra={"test_manifest": str(manifests["test"])},
        **paths,
    )


def main(argv):
    hparams, run_opts, _ = setup_recipe(argv)
    output_folder = Path(hparams["output_folder"])
    manifests = prepare_manifests(hparams, default_builtin_folder=DEFAULT_BUILTIN_FOLDER)
    datasets, samplers = dataio_prepare(hparams, manifests)
    data = (datasets, samplers, manifests)
    stages = quantization_stages(hparams)
    if not stages:  # the FP32 pretraining
        train(hparams, run_opts, hparams["modules"]["model"], output_folder, *data)
        return
    all_results = run_stages(
        hparams,
        stages,
        train_stage=lambda model, folder: train(hparams, run_opts, model, folder, *data),
        calibration_batch=first_batch(datasets["train"], samplers["train"]),
    )
    write_stages_summary(
        hparams, all_results, teacher_results=Path(hparams["teacher"]) / "results.json",
        framework="BEST-RQ",
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
    shutdown_distributed()  # not on an exception: the other ranks may never reach the barrier
