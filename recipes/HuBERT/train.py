#!/usr/bin/env python3
"""HuBERT pretraining with any encoder (Study A, arXiv 2311.02772), every iteration in one run.

Run from this folder:

    python train.py hparams/hubert_conformer_s.yaml [--key=value ...]
    torchrun --nproc_per_node=2 train.py hparams/hubert_transformer.yaml   # DDP

Iteration N (``iterations``, from ``start_iteration``) lives in ``<output_folder>/iter<N>``:
its k-means targets (``targets/``, with their cluster quality), the training, and the proof of
learning (``results.{json,md}``: held-out masked-prediction accuracy beside the most frequent
class and a random-init model). Iteration 1 clusters MFCC; iteration N > 1 clusters
``feature_layer`` of iteration N - 1's model and pretrains again from scratch. Rerunning a
killed command resumes at the iteration and step it reached. The model, targets and shared
training loop live in ``speechbrain_ext.ssl``; this file holds the iteration wiring.

Quantization-aware training (BiT), as in the BEST-RQ recipe: ``--quantize=w1a1
--teacher=<FP32 HuBERT output folder>`` distils the teacher's latest iteration into a 1-bit
student in the output folder, on that iteration's k-means labels; ``--quantize_chain=[w1a4,
w1a2,w1a1]`` runs BiT's stages in ``<output_folder>/stage<k>_<spec>`` (``speechbrain_ext.quant``).
"""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_ext.quant.stages import (
    first_batch,
    quantization_stages,
    run_stages,
    write_stages_summary,
)
from speechbrain_ext.ssl.export import latest_iteration, load_ssl_model
from speechbrain_ext.ssl.hubert_model import build_hubert_model
from speechbrain_ext.ssl.targets import (
    LayerFeatures,
    MfccFeatures,
    cluster_quality_markdown,
    make_targets,
    read_labels,
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


class HubertBrain(SSLBrain):
    """The shared masked-prediction loop, with the cluster labels as the model's targets."""

    input_keys = ("targets",)


def iteration_plan(hparams) -> list[int]:
    """The iterations to run, checked against ``num_clusters``."""
    first, last = hparams["start_iteration"], hparams["iterations"]
    if not 1 <= first <= last:
        raise ValueError(f"need 1 <= start_iteration <= iterations, got {first} and {last}")
    if len(hparams["num_clusters"]) < last:
        raise ValueError(
            f"num_clusters {hparams['num_clusters']} gives no cluster count for iteration {last}"
        )
    return list(range(first, last + 1))


def previous_model_folder(hparams, iteration: int) -> Path:
    """Where the model whose features make iteration ``iteration``'s targets lives."""
    if iteration == 2 and hparams["iteration1_folder"] is not None:
        return Path(hparams["iteration1_folder"])
    return Path(hparams["output_folder"]) / f"iter{iteration - 1}"


def build_targets(hparams, iteration: int, manifests: dict, folder: Path) -> dict:
    """Iteration ``iteration``'s k-means labels in ``folder`` (made once, then reused)."""
    if iteration == 1:
        features, source = MfccFeatures(), "mfcc"
    else:
        previous = previous_model_folder(hparams, iteration)
        model = load_ssl_model(previous)
        layer = hparams["feature_layer"]
        if layer is None:
            layer = max(1, (model.encoder.num_layers - 1) // 2)
        features = LayerFeatures(model, layer=layer)
        source = f"layer {layer} of {previous.resolve()}"
    return make_targets(
        folder,
        manifests,
        features=features,
        source=source,
        num_clusters=hparams["num_clusters"][iteration - 1],
        kmeans_fraction=hparams["kmeans_fraction"],
        kmeans_max_frames=hparams["kmeans_max_frames"],
        seed=hparams["seed"],
    )


def targets_item(labels: dict):
    """The dynamic item giving each utterance's labels (int64, frames)."""

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("targets")
    def targets(uid):
        if uid not in labels:
            raise KeyError(
                f"no k-means labels for utterance {uid!r}: were the targets made for "
                "other manifests?"
            )
        return torch.from_numpy(labels[uid].astype(np.int64))

    return targets


def iteration_datasets(hparams, manifests: dict, targets_folder: Path) -> tuple:
    """Datasets and samplers whose items carry the k-means labels of ``targets_folder``."""
    info = json.loads((targets_folder / "targets.json").read_text())
    labels = {}
    for split in manifests:
        labels.update(read_labels(targets_folder / info["files"][split]))
    datasets, samplers = dataio_prepare(hparams, manifests, items=[targets_item(labels)])
    return datasets, samplers, info


def run_iteration(hparams, run_opts, iteration: int, manifests: dict) -> dict:
    """Targets, training and proof of learning of one iteration; returns its results."""
    folder = Path(hparams["output_folder"]) / f"iter{iteration}"
    if (folder / "results.json").is_file():
        logger.info("iteration %d is complete in %s; skipping it", iteration, folder)
        return json.loads((folder / "results.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    targets_folder = folder / "targets"
    run_on_main(build_targets, args=[hparams, iteration, manifests, targets_folder])
    datasets, samplers, info = iteration_datasets(hparams, manifests, targets_folder)
    if iteration == 1:
        model = hparams["modules"]["model"]
    else:  # from scratch, on the new targets
        torch.manual_seed(hparams["seed"] + iteration)
        model = build_hubert_model(
            **{**hparams["model"].config, "num_classes": hparams["num_clusters"][iteration - 1]}
        )
    return train_in_folder(
        HubertBrain,
        hparams,
        run_opts,
        model,
        folder,
        datasets,
        samplers,
        title=f"HuBERT iteration {iteration}: masked-prediction accuracy on held-out speakers",
        extra={
            "iteration": iteration,
            "test_manifest": str(manifests["test"]),
            "targets": info["source"],
            "cluster_quality": info["cluster_quality"],
        },
        notes=cluster_quality_markdown(info),
    )


def teacher_iteration(teacher) -> Path:
    """The iteration folder of a HuBERT ``teacher`` run whose model and labels teach the first
    quantization stage: its latest trained ``iter<N>``.
    """
    if teacher is None:
        raise ValueError(
            "quantize / quantize_chain need a teacher: set teacher to the output folder of a "
            "trained FP32 HuBERT run (--teacher=results/...)"
        )
    folder = latest_iteration(teacher)
    if folder is None or not (folder / "targets" / "targets.json").is_file():
        raise FileNotFoundError(
            f"--teacher {teacher}: not a trained HuBERT output folder (no iter<N> with a "
            "checkpoint and targets/targets.json)"
        )
    return folder


def quantize(hparams, run_opts, manifests: dict, stages: list) -> dict:
    """Train the quantization stages on the labels of the teacher's latest iteration."""
    iteration = teacher_iteration(hparams["teacher"])
    datasets, samplers, info = iteration_datasets(hparams, manifests, iteration / "targets")
    extra = {"test_manifest": str(manifests["test"]), "targets": info["source"]}
    all_results = run_stages(
        {**hparams, "teacher": str(iteration)},
        stages,
        train_stage=lambda model, folder: train_in_folder(
            HubertBrain,
            hparams,
            run_opts,
            model,
            folder,
            datasets,
            samplers,
            title=f"HuBERT {folder.name}: masked-prediction accuracy on held-out speakers",
            extra=extra,
        ),
        calibration_batch=first_batch(
            datasets["train"], samplers["train"], input_keys=HubertBrain.input_keys
        ),
    )
    write_stages_summary(
        hparams, all_results, teacher_results=iteration / "results.json", framework="HuBERT"
    )
    return all_results


def summary_markdown(all_results: dict) -> str:
    """One table over the iterations: accuracy beside the baselines, and PNMI per split."""
    splits = ("train", "valid", "test")
    lines = [
        "| iteration | targets | trained (%) | most frequent class (%) | random init (%) | "
        + " | ".join(f"PNMI ({split})" for split in splits)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(splits),
    ]
    for iteration, results in sorted(all_results.items()):
        accuracy = results["accuracy"]
        quality = results["cluster_quality"]
        pnmi = [
            f"{quality[split]['pnmi']:.3f}" if "pnmi" in quality.get(split, {}) else "–"
            for split in splits
        ]
        lines.append(
            f"| {iteration} | {results['num_classes']} clusters of {results['targets']} "
            f"| {100 * accuracy['trained']:.2f} | {100 * accuracy['most_frequent_class']:.2f} "
            f"| {100 * accuracy['random_init']:.2f} | {' | '.join(pnmi)} |"
        )
    return "\n".join(lines)


def main(argv):
    hparams, run_opts, _ = setup_recipe(argv)
    manifests = prepare_manifests(hparams, default_builtin_folder=DEFAULT_BUILTIN_FOLDER)
    stages = quantization_stages(hparams)
    if stages:
        quantize(hparams, run_opts, manifests, stages)
        return
    all_results = {}
    for iteration in iteration_plan(hparams):
        results = run_iteration(hparams, run_opts, iteration, manifests)
        if results is not None:
            all_results[iteration] = results
    if if_main_process():
        output_folder = Path(hparams["output_folder"])
        table = summary_markdown(all_results)
        (output_folder / "results.md").write_text(
            f"# HuBERT, `{hparams['encoder']}`: every iteration\n\n{table}\n"
        )
        print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
    shutdown_distributed()  # not on an exception: the other ranks may never reach the barrier
