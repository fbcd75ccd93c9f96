"""Quantization-aware training stages of a recipe: one student, or BiT's chain W1A4 → W1A2 → W1A1.

A recipe reads ``quantize`` (one spec), ``quantize_chain`` (a list of specs), ``teacher`` (the FP32
output folder that teaches the first stage) and the ``distill_*`` weights (see
:class:`~speechbrain_ext.quant.distill.DistillationModel`). :func:`quantization_stages` lists the
stages and their folders: ``quantize`` trains in the output folder itself, ``quantize_chain``
stage k in ``<output_folder>/stage<k>_<spec>``; ``quantize_keep`` (module patterns, optional) leaves
the same modules FP32 in every stage (``keep=`` of each spec; the folders keep the bare name).
:func:`run_stages` trains them in order, each
student initialised and taught by the previous stage's model (the first by ``teacher``); a stage
whose folder has a ``results.json`` is finished and skipped, so rerunning a killed chain resumes
(inside a stage, from its last checkpoint, as any run).

Example
-------
>>> hparams = {"output_folder": "out", "quantize": None, "quantize_chain": ["w1a2", "w1a1"]}
>>> [(spec, str(folder)) for spec, folder in quantization_stages(hparams)]
[('w1a2', 'out/stage1_w1a2'), ('w1a1', 'out/stage2_w1a1')]
>>> stage_folder_name(1, "w1a1,keep=encoder.front_end|head")
'stage1_w1a1-keep-encoder.front_end-head'
>>> hparams["quantize_keep"] = ["encoder.front_end", "head"]
>>> [(spec, str(folder)) for spec, folder in quantization_stages(hparams)][1]
('w1a1,keep=encoder.front_end|head', 'out/stage2_w1a1')
"""

import dataclasses
import json
import logging
import re
from pathlib import Path

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from speechbrain_ext.quant.distill import DistillationModel, make_student
from speechbrain_ext.quant.spec import parse_spec

logger = logging.getLogger(__name__)


def stage_folder_name(index: int, spec: str) -> str:
    """``stage<index>_<spec>``, runs of characters other than letters, digits, ``._`` as ``-``."""
    return f"stage{index}_{re.sub(r'[^A-Za-z0-9._]+', '-', str(spec))}"


def quantization_stages(hparams) -> list[tuple[str, Path]]:
    """(spec, folder) of every quantization stage; empty for an FP32 run."""
    quantize, chain = hparams["quantize"], hparams["quantize_chain"]
    if quantize is not None and chain:
        raise ValueError("set quantize (one student) or quantize_chain (stages), not both")
    output_folder = Path(hparams["output_folder"])
    keep = hparams.get("quantize_keep") or []
    if isinstance(keep, str):
        keep = keep.split("|")

    def with_keep(spec) -> str:
        if not keep:
            return str(spec)
        parsed = parse_spec(spec)
        if parsed.keep:
            raise ValueError(
                f"quantization spec {spec!r} has keep= and quantize_keep is set too: use one"
            )
        return dataclasses.replace(parsed, keep=tuple(map(str, keep))).label

    if chain:
        if isinstance(chain, str):
            raise ValueError(f"quantize_chain must be a list of specs, got {chain!r}")
        return [
            (with_keep(spec), output_folder / stage_folder_name(k, spec))
            for k, spec in enumerate(chain, start=1)
        ]
    return [] if quantize is None else [(with_keep(quantize), output_folder)]


def distillation_options(hparams) -> dict:
    """The :class:`DistillationModel` weights from the recipe keys."""
    return {
        "logit_weight": hparams["distill_logit_weight"],
        "hidden_weight": hparams["distill_hidden_weight"],
        "temperature": hparams["distill_temperature"],
        "target_weight": hparams["distill_target_weight"],
    }


def first_batch(dataset, batch_sampler, *, input_keys=()) -> tuple:
    """``(wavs, wav_lens, inputs)`` of the first batch of ``batch_sampler`` (for calibration)."""
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_sampler=batch_sampler)
    batch = next(iter(loader))
    wavs, wav_lens = batch.sig
    return wavs, wav_lens, {key: getattr(batch, key).data for key in input_keys}


def run_stages(
    hparams, stages, *, train_stage, calibration_batch, load_model=None
) -> dict[str, dict]:
    """Train every stage not finished yet; returns each stage's results by folder name.

    Arguments
    ---------
    hparams : dict
        Recipe hyperparameters (``teacher`` and the ``distill_*`` keys are read).
    stages : list of (spec, Path)
        From :func:`quantization_stages`.
    train_stage : callable
        ``train_stage(model, folder) -> results`` trains a :class:`DistillationModel` with the
        recipe's Brain, saves the student's config and spec in ``folder`` and writes its
        ``results.json`` (main process; others may return None).
    calibration_batch : tuple
        ``(wavs, wav_lens[, inputs])`` on which each student's α is initialised.
    load_model : callable, optional
        Loads a model from an output folder
        (default :func:`~speechbrain_ext.ssl.export.load_ssl_model`).
    """
    if load_model is None:
        from speechbrain_ext.ssl.export import load_ssl_model as load_model
    teacher_folder = hparams["teacher"]
    if teacher_folder is None:
        raise ValueError(
            "quantize / quantize_chain need a teacher: set teacher to the output folder of a "
            "trained FP32 run (--teacher=results/...)"
        )
    all_results = {}
    for spec, folder in stages:
        done = folder / "results.json"
        if done.is_file():
            logger.info("stage %s is complete in %s; skipping it", spec, folder)
        else:
            teacher = load_model(teacher_folder)
            student = make_student(teacher, spec, calibration_batch=calibration_batch)
            model = DistillationModel(
                student=student, teacher=teacher, **distillation_options(hparams)
            )
            logger.info("distilling %s into a %s student in %s", teacher_folder, spec, folder)
            train_stage(model, folder)
        if if_main_process() and done.is_file():
            all_results[folder.name] = json.loads(done.read_text())
        teacher_folder = folder
    return all_results


def stages_markdown(all_results: dict, *, teacher_results: dict | None = None) -> str:
    r"""One table: masked-prediction accuracy of the teacher and every stage, with baselines.

    Example
    -------
    >>> acc = {"trained": 0.5, "most_frequent_class": 0.1, "random_init": 0.05}
    >>> print(stages_markdown({"stage1_w1a1": {"accuracy": acc, "quantization": "w1a1"}}))
    | model | trained (%) | most frequent class (%) | random init (%) |
    |---|---|---|---|
    | stage1_w1a1 (w1a1) | 50.00 | 10.00 | 5.00 |
    >>> table = stages_markdown({"stage1_w1a1": {"accuracy": acc, "quantization": "w1a1,keep=a|b"}})
    >>> print(table.splitlines()[-1])  # the spec's | escaped: one cell
    | stage1_w1a1 (w1a1,keep=a\|b) | 50.00 | 10.00 | 5.00 |
    """
    lines = [
        "| model | trained (%) | most frequent class (%) | random init (%) |",
        "|---|---|---|---|",
    ]
    rows = [("teacher (fp32)", teacher_results)] if teacher_results else []
    for name, results in all_results.items():
        spec = str(results.get("quantization")).replace("|", r"\|")  # keep=a|b: one cell
        rows.append((f"{name} ({spec})", results))
    for name, results in rows:
        accuracy = results["accuracy"]
        lines.append(
            f"| {name} | {100 * accuracy['trained']:.2f} "
            f"| {100 * accuracy['most_frequent_class']:.2f} | {100 * accuracy['random_init']:.2f} |"
        )
    return "\n".join(lines)


def write_stages_summary(hparams, all_results: dict, *, teacher_results, framework: str) -> None:
    """For a chain (``quantize_chain``), write and print ``<output_folder>/results.md``: the
    :func:`stages_markdown` table with the teacher's row from ``teacher_results`` (its
    ``results.json``, when it exists). Main process only; a single student has its own
    ``results.md`` already.
    """
    if not if_main_process() or not hparams["quantize_chain"]:
        return
    teacher_results = Path(teacher_results)
    table = stages_markdown(
        all_results,
        teacher_results=json.loads(teacher_results.read_text())
        if teacher_results.is_file()
        else None,
    )
    path = Path(hparams["output_folder"]) / "results.md"
    path.write_text(f"# {framework} quantization chain\n\n{table}\n")
    print(table)
