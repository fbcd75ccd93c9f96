"""What every SSL pretraining recipe shares: arguments, manifests, data, the Brain, DDP, results.

BEST-RQ's and HuBERT's ``train.py`` keep only what is their own (HuBERT: targets and the
iterations); the rest is here, once:

- :func:`setup_recipe`: SpeechBrain's arguments, the recipe yaml (base or variant,
  :mod:`speechbrain_ext.hparams`), the DDP group and the experiment folder;
- :func:`prepare_manifests`: the user's CSVs, the built-in corpus (generated on first use) or
  LibriSpeech (prepared into the output folder);
- :func:`dataio_prepare`: datasets with a ``sig`` item (and any recipe items), dynamic batching;
- :class:`SSLBrain`: the masked-prediction training loop (Noam schedule, interval logging to the
  text log and TensorBoard with loss, accuracy, lr, audio seconds per second and the padded
  fraction of the batches, a checkpoint after every validation; ``--compile`` compiles the
  encoder only, :mod:`speechbrain_ext.ssl.compile`); :func:`brain_in_folder` builds one whose
  scheduler, epoch counter, checkpoints and logs belong to one folder (a HuBERT iteration, a
  quantization stage);
- :func:`held_out_results`, :func:`write_results`: the held-out proof of learning;
- :func:`check_ddp_parameters`, :func:`shutdown_distributed`: DDP checks and a clean exit.

Every model trained here has ``forward(wavs, wav_lens, *, generator=None, **inputs)`` returning
``loss``, ``correct`` and ``num_masked``; ``inputs`` are the batch items a recipe names in
:attr:`SSLBrain.input_keys` (HuBERT's ``targets``).
"""

import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_ext.hparams import load_recipe_hparams
from speechbrain_ext.ssl.checkpoints import first_nonfinite

logger = logging.getLogger(__name__)


def setup_recipe(argv: list[str]):
    """Parse SpeechBrain's command line, load the yaml, start DDP and the experiment folder.

    Returns ``(hparams, run_opts, hparams_file)``. SpeechBrain 1.1.2 parses
    ``--optimizer_step_limit`` as a string; it is made an int here.
    """
    argv, compile_overrides = _compile_overrides(argv)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = "\n".join(filter(None, [overrides, *compile_overrides]))
    if isinstance(run_opts.optimizer_step_limit, str):
        limit = int(run_opts.optimizer_step_limit)
        run_opts = dataclasses.replace(run_opts, optimizer_step_limit=limit)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams, base, applied = load_recipe_hparams(hparams_file, overrides)
    output_folder = Path(hparams["output_folder"])
    check_run_folder(output_folder, run_identity(hparams))  # before anything is written
    sb.create_experiment_directory(
        experiment_directory=str(output_folder),
        hyperparams_to_save=str(base),
        overrides=applied,
    )
    # SpeechBrain keeps a copy of the file that called it (this one); keep the recipe's instead.
    script = Path(sys.argv[0])
    if if_main_process() and script.suffix == ".py" and script.is_file():
        (output_folder / Path(__file__).name).unlink(missing_ok=True)
        shutil.copy(script, output_folder / script.name)
    return hparams, run_opts, hparams_file


def _compile_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """SpeechBrain's ``--compile`` is a flag and refuses ``--compile=True``: such an argument is
    taken out of ``argv`` and becomes an override of the yaml key ``compile`` (which
    SpeechBrain's Brain reads as its run option), so ``--compile``, ``--compile=True`` and
    ``--compile=False`` all work.

    >>> _compile_overrides(["a.yaml", "--compile=True", "--lr=1", "--compile_mode=default"])
    (['a.yaml', '--lr=1', '--compile_mode=default'], ['compile: True'])
    """
    rest, overrides = [], []
    for arg in argv:
        if arg.startswith("--compile="):
            overrides.append(f"compile: {arg.split('=', 1)[1]}")
        else:
            rest.append(arg)
    return rest, overrides


RUN_FILE = "run.json"
DATA_KEYS = (
    "data_folder",
    "builtin_folder",
    "builtin_minutes",
    "builtin_seed",
    "train_csv",
    "valid_csv",
    "test_csv",
    "train_splits",
    "valid_split",
    "test_split",
    "avoid_if_longer_than",
    "avoid_if_shorter_than",
)
"""The recipe keys that decide a run's data (with the model's config, a run folder's identity)."""


class RunFolderMismatchError(RuntimeError):
    """An output folder was made by a run with another model or other data."""


def _normalised(value):
    if isinstance(value, str) and os.sep in value:
        return str(Path(value).expanduser().resolve())
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    return value


def run_identity(hparams) -> dict:
    """What makes a run folder's model and data: the model's config and the data keys.

    Example
    -------
    >>> class Model:
    ...     config = {"encoder": "conformer", "d_model": 32}
    >>> identity = run_identity({"modules": {"model": Model()}, "data_folder": None, "seed": 1})
    >>> identity["model"], identity["data"]
    ({'encoder': 'conformer', 'd_model': 32}, {'data_folder': None})
    """
    model = hparams["modules"]["model"]
    data = {key: _normalised(hparams[key]) for key in DATA_KEYS if key in hparams}
    return {"model": json.loads(json.dumps(model.config)), "data": data}


def _differences(recorded: dict, current: dict, prefix="") -> list[str]:
    keys = sorted(set(recorded) | set(current))
    differ = []
    for key in keys:
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differ += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differ.append(f"{prefix}{key}: {old!r} there, {new!r} now")
    return differ


def check_run_folder(
    output_folder,
    identity: dict,
    *,
    write: bool = True,
    fresh_hint: str = "pass a new --output_folder to start a fresh run",
) -> None:
    """Stop when ``output_folder`` was made with another model or data; record it otherwise.

    The first run writes ``run.json``; a rerun whose identity differs raises
    :class:`RunFolderMismatchError` naming every differing key, before anything in the folder
    is touched. Called again with more of the identity (the manifests' fingerprint, once they
    are prepared), it checks and records that too. ``fresh_hint`` ends the error message (what
    else the user can do).

    Example
    -------
    >>> folder = getfixture("tmp_path") / "run"
    >>> check_run_folder(folder, {"model": {"d_model": 32}, "data": {"data_folder": None}})
    >>> check_run_folder(folder, {"model": {"d_model": 64}, "data": {"data_folder": None}})
    Traceback (most recent call last):
    ...
    speechbrain_ext.ssl.training.RunFolderMismatchError: ...model.d_model: 32 there, 64 now...
    """
    path = Path(output_folder) / RUN_FILE
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    comparable = {key: value for key, value in recorded.items() if key in identity}
    differ = _differences(comparable, identity) if comparable else []
    if differ:
        raise RunFolderMismatchError(
            f"{output_folder} holds a run made with another model or other data "
            f"({'; '.join(differ)}). Nothing was changed. Rerun with the settings recorded in "
            f"{path}, or {fresh_hint}."
        )
    if write and if_main_process() and {**recorded, **identity} != recorded:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({**recorded, **identity}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def manifests_fingerprint(manifests: dict) -> dict:
    """SHA-256 of each manifest's bytes (split → hex digest)."""
    return {
        split: hashlib.sha256(Path(path).read_bytes()).hexdigest()
        for split, path in sorted(manifests.items())
    }


def prepare_manifests(hparams, *, default_builtin_folder) -> dict[str, Path]:
    """Manifests (train, valid, test), and the run folder checked against their fingerprint.

    See :func:`find_manifests` for where they come from. A run folder made from manifests of
    other content stops here (:func:`check_run_folder`).
    """
    manifests = find_manifests(hparams, default_builtin_folder=default_builtin_folder)
    for split, path in manifests.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"the {split} manifest {path} does not exist")
    check_run_folder(hparams["output_folder"], {"manifests": manifests_fingerprint(manifests)})
    return validated_manifests(manifests, Path(hparams["output_folder"]) / "manifests_checked")


def validated_manifests(manifests: dict, folder: Path) -> dict[str, Path]:
    """The manifests after :func:`~speechbrain_ext.data.validate.validate_manifests` (columns,
    durations, readable mono 16 kHz audio, unique IDs within and across splits), checked once
    on the main process; rows it drops (bad durations) are counted in the log and the cleaned
    CSVs written to ``folder``, which every process then reads.
    """
    from speechbrain_ext.data.validate import validate_manifests

    # A file named for two splits (valid_split == test_split) is one set of utterances: checked
    # once, under its first split's name, not reported as IDs duplicated across splits.
    first_split = {}
    for split, path in manifests.items():
        first_split.setdefault(Path(path).resolve(), split)
    unique = {split: manifests[split] for split in first_split.values()}
    cleaned = {split: folder / f"{split}.validated.csv" for split in unique}

    def check():
        for path in cleaned.values():
            path.unlink(missing_ok=True)  # from an earlier run: redone, never reused unchecked
        validate_manifests(unique, output_folder=folder)

    run_on_main(check)
    checked = {}
    for split, path in manifests.items():
        owner = first_split[Path(path).resolve()]
        checked[split] = cleaned[owner] if cleaned[owner].is_file() else Path(path)
    return checked


def find_manifests(hparams, *, default_builtin_folder) -> dict[str, Path]:
    """Manifests (train, valid, test): given, the built-in corpus's or LibriSpeech's.

    Reads ``train_csv``, ``valid_csv``, ``test_csv`` (all three or none), ``data_folder``
    (LibriSpeech, with ``train_splits``, ``valid_split``, ``test_split``), ``builtin_folder``,
    ``builtin_minutes`` and ``builtin_seed``.
    """
    given = {
        "train": hparams["train_csv"],
        "valid": hparams["valid_csv"],
        "test": hparams["test_csv"],
    }
    if any(path is not None for path in given.values()):
        missing = [f"{split}_csv" for split, path in given.items() if path is None]
        if missing:
            raise ValueError(f"set all of train_csv, valid_csv, test_csv; missing {missing}")
        return {split: Path(path) for split, path in given.items()}
    if hparams["data_folder"] is None:
        from speechbrain_ext.corpus import ensure_builtin_corpus

        folder = Path(hparams["builtin_folder"] or default_builtin_folder)
        minutes = hparams["builtin_minutes"]
        kwargs = {} if minutes is None else {"minutes": minutes}
        if hparams["builtin_seed"] is not None:
            kwargs["seed"] = hparams["builtin_seed"]
        run_on_main(ensure_builtin_corpus, args=[folder], kwargs=kwargs)
        manifests = folder / "manifests" / "librispeech"
        return {
            "train": manifests / "train.csv",
            "valid": manifests / "dev.csv",
            "test": manifests / "test.csv",
        }

    from speechbrain_ext.data.prepare.librispeech import prepare_librispeech

    save_folder = Path(hparams["output_folder"]) / "manifests"
    splits = [*hparams["train_splits"], hparams["valid_split"], hparams["test_split"]]
    run_on_main(
        prepare_librispeech,
        args=[hparams["data_folder"], save_folder],
        kwargs={"splits": list(dict.fromkeys(splits)), "merge": {"train": hparams["train_splits"]}},
    )
    return {
        "train": save_folder / "train.csv",
        "valid": save_folder / f"{hparams['valid_split']}.csv",
        "test": save_folder / f"{hparams['test_split']}.csv",
    }


def dataio_prepare(hparams, manifests, *, items=()):
    """Datasets with ``id``, ``sig`` and the ``items`` (dynamic items, each decorated with
    SpeechBrain's ``takes``/``provides``), and their dynamic batch samplers.

    Training utterances outside [``avoid_if_shorter_than``, ``avoid_if_longer_than``] seconds are
    left out, and the count is logged. Returns ``(datasets, samplers)``, dicts by split.
    """

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    datasets = {}
    for split, csv in manifests.items():
        dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path=str(csv))
        total = len(dataset)
        if split == "train":
            dataset = dataset.filtered_sorted(
                sort_key="duration",
                key_max_value={"duration": hparams["avoid_if_longer_than"]},
                key_min_value={"duration": hparams["avoid_if_shorter_than"]},
            )
            if len(dataset) < total:
                logger.info(
                    "%s: %d of %d utterances left out (shorter than %s s or longer than %s s)",
                    csv,
                    total - len(dataset),
                    total,
                    hparams["avoid_if_shorter_than"],
                    hparams["avoid_if_longer_than"],
                )
        else:
            dataset = dataset.filtered_sorted(sort_key="duration")
        if len(dataset) == 0:
            raise ValueError(f"the {split} manifest {csv} has no usable utterance")
        datasets[split] = dataset
    keys = ["id", "sig"]
    for item in (audio_pipeline, *items):
        sb.dataio.dataset.add_dynamic_item(list(datasets.values()), item)
    for item in items:
        keys += [key for key in item.provides if key not in keys]
    sb.dataio.dataset.set_output_keys(list(datasets.values()), keys)

    def sampler(dataset, *, shuffle):
        return DynamicBatchSampler(
            dataset,
            max_batch_length=hparams["max_batch_len"],
            num_buckets=min(hparams["num_buckets"], len(dataset)),
            length_func=lambda x: float(x["duration"]),
            shuffle=shuffle,
            batch_ordering="random" if shuffle else "ascending",
            seed=hparams["seed"],
        )

    samplers = {split: sampler(ds, shuffle=split == "train") for split, ds in datasets.items()}
    return datasets, samplers


class SSLBrain(sb.Brain):
    """Masked-prediction pretraining; logs every ``log_interval`` optimiser steps.

    Reads from hparams: ``lr_scheduler`` (called with the optimiser before each step),
    ``log_interval``, ``eval_seed`` (fixed masks for validation), ``train_logger``,
    ``tensorboard_logger``, and with ``compile`` (SpeechBrain's run option, from the yaml or
    ``--compile``) ``compile_mode`` and ``compile_backend``. The model is ``modules.model``.

    Each interval's log line holds ``loss``, ``accuracy``, ``lr``, ``audio_s_per_s`` (seconds
    of unpadded audio per wall-clock second) and ``padded_fraction``: the padded samples of the
    interval's batch tensors over all their samples (Σ padded / Σ batch × length; a measure of
    what dynamic batching wastes).
    """

    input_keys: tuple[str, ...] = ()
    """Batch items passed to the model by name (their padded ``data``)."""

    sample_rate = 16000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._nonfinite_in_step = False
        if self.checkpointer is not None and "random_state" not in self.checkpointer.recoverables:
            # Dropout, masks and noise draw from the global generators: checkpointed, so a
            # resumed run draws what the uninterrupted one would have.
            self.checkpointer.add_recoverable("random_state", RandomState())

    def _compile(self):
        """``compile``: :func:`~speechbrain_ext.ssl.compile.compile_encoder` of the model (the
        encoder only, in place, eager on any failure), never SpeechBrain's compilation of the
        whole module (masking and loss have data-dependent shapes); ``--jit`` as SpeechBrain
        does it.
        """
        wanted, self.compile = self.compile, False
        try:
            super()._compile()
        finally:
            self.compile = wanted
        if wanted:
            from speechbrain_ext.ssl.compile import compile_encoder

            compile_encoder(
                self.modules.model, mode=self.compile_mode, backend=self.hparams.compile_backend
            )

    def on_fit_start(self):
        """Recover the checkpoint and start the first logging interval."""
        super().on_fit_start()
        self._reset_interval()

    def check_loss_isfinite(self, loss):
        """Count a non-finite loss; its optimiser step will be skipped (not counted, the
        schedule not moved); past ``nonfinite_patience`` such batches the run stops.
        """
        if bool(torch.isfinite(loss)):
            return
        self._nonfinite_in_step = True
        self.nonfinite_count += 1
        logger.warning(
            "non-finite loss (%s) at optimiser step %d; the step is skipped (%d of %d allowed)",
            float(loss.detach()),
            self.optimizer_step + 1,
            self.nonfinite_count,
            self.nonfinite_patience,
        )
        if self.nonfinite_count > self.nonfinite_patience:
            raise NonFiniteTrainingError(
                f"the loss was not finite in {self.nonfinite_count} batches (patience "
                f"{self.nonfinite_patience}), the last at optimiser step "
                f"{self.optimizer_step + 1}: {self._likely_cause()}"
            )

    def _likely_cause(self) -> str:
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else None
        folder = self.checkpointer.checkpoints_dir if self.checkpointer is not None else None
        return (
            f"the learning rate (now {lr}) is likely too high, or the data holds extreme "
            f"values. Nothing non-finite was saved: the last good checkpoint in {folder} is "
            "kept; rerun with a lower --lr to resume from it, or use a new --output_folder."
        )

    def optimizers_step(self):
        """Set the step's learning rate and step, unless a loss of this step was non-finite;
        stop at once if the step made the weights non-finite.
        """
        if self._nonfinite_in_step:
            self._nonfinite_in_step = False
            for optimizer in self.optimizers_dict.values():
                optimizer.zero_grad(set_to_none=True)
            return  # neither the step counter nor the schedule moves
        self.hparams.lr_scheduler(self.optimizer)
        super().optimizers_step()
        bad = first_nonfinite(self.modules, trainable_only=True)
        if bad is not None:
            raise NonFiniteTrainingError(
                f"optimiser step {self.optimizer_step} made the weights non-finite ({bad}): "
                f"{self._likely_cause()}"
            )

    def _reset_interval(self):
        self.interval = {
            "loss": 0.0,
            "batches": 0,
            "correct": 0,
            "masked": 0,
            "audio_s": 0.0,
            "samples": 0,
            "padded": 0.0,
        }
        self.interval_start = time.time()

    def model_inputs(self, batch) -> dict:
        """The model's keyword inputs from ``batch`` (:attr:`input_keys`)."""
        return {key: getattr(batch, key).data for key in self.input_keys}

    def compute_forward(self, batch, stage):
        """The model's forward (seeded masks outside training)."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig  # (batch, samples), (batch,)
        generator = None if stage == sb.Stage.TRAIN else self.eval_generator
        return self.modules.model(wavs, wav_lens, generator=generator, **self.model_inputs(batch))

    def compute_objectives(self, outputs, batch, stage):
        """The masked loss; counts correct masked predictions."""
        self.stage_correct += int(outputs["correct"])
        self.stage_masked += int(outputs["num_masked"])
        return outputs["loss"]

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Accumulate interval statistics; log every ``log_interval`` steps."""
        wavs, wav_lens = batch.sig
        interval = self.interval
        interval["loss"] += float(loss.detach())
        interval["batches"] += 1
        interval["correct"] += int(outputs["correct"])
        interval["masked"] += int(outputs["num_masked"])
        interval["audio_s"] += float(wav_lens.sum()) * wavs.shape[1] / self.sample_rate
        interval["samples"] += wavs.numel()
        interval["padded"] += wavs.numel() - float(wav_lens.sum()) * wavs.shape[1]
        if should_step and self.optimizer_step % self.hparams.log_interval == 0:
            self._log_interval()

    def _log_interval(self):
        interval = self.interval
        elapsed = max(time.time() - self.interval_start, 1e-9)
        stats = {
            "loss": interval["loss"] / max(interval["batches"], 1),
            "accuracy": interval["correct"] / max(interval["masked"], 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "audio_s_per_s": interval["audio_s"] / elapsed,
            "padded_fraction": max(interval["padded"], 0.0) / max(interval["samples"], 1),
        }
        # SpeechBrain's loggers run on the main process but broadcast: call them on every rank.
        self.hparams.train_logger.log_stats(
            stats_meta={"step": self.optimizer_step}, train_stats=stats
        )
        if if_main_process():
            writer = self.hparams.tensorboard_logger.writer
            for name, value in stats.items():
                writer.add_scalar(f"train_step/{name}", value, self.optimizer_step)
            writer.flush()
        self._reset_interval()

    def on_stage_start(self, stage, epoch=None):
        """Reset the accuracy counters; seed evaluation masks."""
        self.stage_correct = 0
        self.stage_masked = 0
        if stage != sb.Stage.TRAIN:  # the same masks and noise at every validation
            self.eval_generator = torch.Generator(device=self.device).manual_seed(
                self.hparams.eval_seed
            )

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the epoch's statistics and checkpoint after validation."""
        stats = {"loss": stage_loss, "accuracy": self.stage_correct / max(self.stage_masked, 1)}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        meta = {"epoch": epoch, "step": self.optimizer_step}
        if self.optimizer is not None:
            meta["lr"] = self.optimizer.param_groups[0]["lr"]
        for stats_logger in (self.hparams.train_logger, self.hparams.tensorboard_logger):
            stats_logger.log_stats(stats_meta=meta, train_stats=self.train_stats, valid_stats=stats)
        self.checkpointer.save_and_keep_only(
            meta={"valid_loss": stage_loss, "step": self.optimizer_step},
            end_of_epoch=True,
            num_to_keep=2,
        )

    def fit_splits(self, datasets, samplers, *, num_workers: int):
        """``fit`` on the train and valid splits with their dynamic batch samplers.

        The loaders draw their worker seeds from generators of their own, so that creating
        them does not move the global random state (checkpointed for bit-identical resumes).
        """
        seed = int(self.hparams.seed)
        loaders = {
            split: {
                "batch_sampler": samplers[split],
                "num_workers": num_workers,
                "generator": torch.Generator().manual_seed(seed + index),
            }
            for index, split in enumerate(("train", "valid"))
        }
        self.fit(
            self.hparams.epoch_counter,
            datasets["train"],
            datasets["valid"],
            train_loader_kwargs=loaders["train"],
            valid_loader_kwargs=loaders["valid"],
        )


class NonFiniteTrainingError(RuntimeError):
    """The training diverged (non-finite loss past the patience, or non-finite weights)."""


@register_checkpoint_hooks
class RandomState:
    """Python's, NumPy's and torch's global random states, as a checkpoint recoverable.

    Example
    -------
    >>> path = getfixture("tmp_path") / "random.ckpt"
    >>> state = RandomState()
    >>> _ = torch.manual_seed(3); state.save(path); first = torch.rand(2)
    >>> state.load(path); bool(torch.equal(torch.rand(2), first))
    True
    """

    @mark_as_saver
    def save(self, path):
        """Write the current states to ``path``."""
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),  # noqa: NPY002 (the global state is what we save)
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restore the states saved in ``path``."""
        del end_of_epoch
        state = torch.load(path, weights_only=False)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def brain_in_folder(
    brain_class,
    hparams,
    run_opts,
    *,
    model,
    folder,
    checkpointed=None,
    save_folder=None,
    train_log=None,
) -> SSLBrain:
    """A ``brain_class`` training ``model`` with a fresh scheduler and epoch counter, its
    checkpoints in ``save_folder`` (default ``<folder>/save``), its text log in ``train_log``
    (default ``<folder>/train_log.txt``) and TensorBoard in ``<folder>/tensorboard``.

    ``hparams`` gives ``lr_scheduler``, ``epoch_counter``, ``checkpointer``, ``train_logger``
    and ``tensorboard_logger`` as partials (yaml ``!name:``) and ``optimizer``. The checkpoints
    hold ``checkpointed`` as ``model`` (default ``model``; a distillation run keeps its student
    only), the scheduler and the counter.
    """
    folder = Path(folder)
    lr_scheduler = hparams["lr_scheduler"]()
    epoch_counter = hparams["epoch_counter"]()
    checkpointer = hparams["checkpointer"](
        checkpoints_dir=Path(save_folder or folder / "save"),
        recoverables={
            "model": model if checkpointed is None else checkpointed,
            "lr_scheduler": lr_scheduler,
            "counter": epoch_counter,
        },
    )
    folder_hparams = {
        **hparams,
        "lr_scheduler": lr_scheduler,
        "epoch_counter": epoch_counter,
        "train_logger": hparams["train_logger"](save_file=train_log or folder / "train_log.txt"),
        "tensorboard_logger": hparams["tensorboard_logger"](save_dir=folder / "tensorboard"),
    }
    return brain_class(
        modules={"model": model},
        opt_class=hparams["optimizer"],
        hparams=folder_hparams,
        run_opts=run_opts,
        checkpointer=checkpointer,
    )


def evaluation_batches(brain: SSLBrain, dataset, batch_sampler):
    """A re-iterable of ``(wavs, wav_lens, inputs)`` over ``dataset`` (no DDP sharding)."""
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_sampler=batch_sampler, num_workers=brain.hparams.num_workers
    )

    class _Batches:
        def __iter__(self):
            for batch in loader:
                wavs, wav_lens = batch.sig
                yield wavs, wav_lens, brain.model_inputs(batch)

    return _Batches()


def check_ddp_parameters(model, output_folder: Path) -> None:
    """All ranks must hold identical parameters; writes ``ddp_check.json`` on rank 0."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        if isinstance(param, torch.Tensor):
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    digests = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(digests, digest.hexdigest())
    if if_main_process():
        check = {"world_size": len(digests), "sha256": digests, "identical": len(set(digests)) == 1}
        (Path(output_folder) / "ddp_check.json").write_text(json.dumps(check, indent=2) + "\n")
    if len(set(digests)) != 1:
        raise RuntimeError(f"model state differs across DDP ranks: {digests}")


def held_out_results(brain: SSLBrain, model, datasets, samplers) -> dict:
    """The proof of learning of a trained ``model``: held-out masked-prediction accuracy beside
    the most frequent class and a random-init model (:func:`~speechbrain_ext.ssl.evaluate.
    proof_of_learning`), with ``optimizer_steps``. Reads ``eval_seed`` and
    ``majority_max_utterances``; a ``--debug`` run scores its debug batches only.
    """
    from speechbrain_ext.ssl.evaluate import proof_of_learning

    results = proof_of_learning(
        model,
        evaluation_batches(brain, datasets["test"], samplers["test"]),
        train_batches=evaluation_batches(brain, datasets["train"], samplers["train"]),
        seed=brain.hparams.eval_seed,
        max_train_utterances=brain.hparams.majority_max_utterances,
        max_batches=brain.debug_batches if brain.debug else None,
    )
    results["optimizer_steps"] = brain.optimizer_step
    return results


def write_results(folder, results: dict, *, title: str, description: str) -> str:
    """Write a proof of learning as ``results.json`` and ``results.md``; returns the table."""
    from speechbrain_ext.ssl.evaluate import results_markdown

    folder = Path(folder)
    table = results_markdown(results)
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (folder / "results.md").write_text(f"# {title}\n\n{description}\n\n{table}\n")
    logger.info("results written to %s", folder / "results.md")
    return table


def shutdown_distributed() -> None:
    """Wait for every rank, then tear the process group down.

    A rank that leaves while gloo's threads still serve the group dies with
    ``terminate called without an active exception`` (SIGABRT) and the launcher
    reports the whole run as failed, although every rank finished its work.
    Not to be called on an exception: the other ranks may never reach the barrier.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def median_throughput(train_log) -> float | None:
    r"""Median training audio seconds per second over a ``train_log.txt``'s interval lines
    (None when there is none).

    Example
    -------
    >>> log = getfixture("tmp_path") / "train_log.txt"
    >>> lines = [f"step: {i} - train audio_s_per_s: {v}" for i, v in enumerate([30.0, 10, 20.0])]
    >>> _ = log.write_text("\n".join(lines))
    >>> median_throughput(log)
    20.0
    """
    log = Path(train_log)
    if not log.is_file():
        return None
    values = sorted(float(v) for v in re.findall(r"audio_s_per_s: ([0-9.e+-]+)", log.read_text()))
    return values[len(values) // 2] if values else None


def train_in_folder(
    brain_class,
    hparams,
    run_opts,
    model,
    folder,
    datasets,
    samplers,
    *,
    title: str,
    extra: dict,
    notes: str = "",
    save_folder=None,
    train_log=None,
) -> dict | None:
    """Train ``model`` (an SSL model, or a quantized student in its
    :class:`~speechbrain_ext.quant.distill.DistillationModel`) into ``folder`` with a
    ``brain_class`` (:func:`brain_in_folder`) and write its proof of learning there
    (:func:`held_out_results`, :func:`write_results`); returns the results (main process).

    Before training, ``folder`` gets the model's config and, for a quantized student, its spec
    (all ``load_ssl_encoder`` needs besides the weights); the checkpoints hold the student
    only. The results hold ``extra`` (it must give ``test_manifest``), ``quantization`` (the
    spec, or ``fp32``) and, for a student, ``teacher``; ``notes`` follow the table's
    description.
    """
    from speechbrain_ext.ssl.export import save_model_config, save_quantization_spec

    folder = Path(folder)
    student = getattr(model, "student", model)
    spec = getattr(student, "quant_spec", "fp32")
    if if_main_process():
        save_model_config(student, folder)
        save_quantization_spec(student, folder)  # a quantized student only
    brain = brain_in_folder(
        brain_class, hparams, run_opts, model=model, folder=folder, checkpointed=student,
        save_folder=save_folder, train_log=train_log,
    )  # fmt: skip
    front_end = getattr(student.encoder, "features", None)
    brain.sample_rate = getattr(front_end, "sample_rate", brain.sample_rate)
    logger.info(
        "%s %s (%s) in %s: %.2f M parameters, %d classes, %d representations of width %d",
        student.framework,
        student.config["encoder"],
        spec,
        folder,
        sum(p.numel() for p in student.parameters()) / 1e6,
        student.num_classes,
        student.encoder.num_layers,
        student.encoder.hidden_size,
    )
    brain.fit_splits(datasets, samplers, num_workers=hparams["num_workers"])
    check_ddp_parameters(student, folder)
    if not if_main_process():
        return None
    results = held_out_results(brain, student, datasets, samplers)
    results.update(extra, quantization=spec)
    if student is not model:
        results["teacher"] = str(hparams["teacher"])
    description = (
        f"Model: `{student.config['encoder']}` ({spec}), {brain.optimizer_step} optimiser "
        f"steps; test set `{results['test_manifest']}`."
    )
    table = write_results(
        folder, results, title=title, description=description + (f"\n\n{notes}" if notes else "")
    )
    print(f"{title}\n{table}")
    return results
