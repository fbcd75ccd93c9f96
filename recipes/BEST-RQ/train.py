#!/usr/bin/env python3
"""BEST-RQ pretraining with any token mixer (Study B, arXiv 2409.02596).

Run from this folder:

    python train.py hparams/bestrq_fastformer.yaml [--key=value ...]
    torchrun --nproc_per_node=2 train.py hparams/bestrq_mhsa.yaml   # DDP

Without ``--data_folder`` the built-in corpus is generated on first use; with
``--data_folder=/path/to/LibriSpeech`` the LibriSpeech splits are prepared.
The model, objective and evaluation live in ``speechbrain_ext.ssl``; this file
holds the wiring: data pipeline, Brain hooks (logging, Noam schedule), and the
final proof of learning (held-out masked-prediction accuracy beside two
baselines, written to ``<output_folder>/results.{json,md}``).
"""

import dataclasses
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_ext.ssl.evaluate import proof_of_learning, results_markdown
from speechbrain_ext.ssl.export import save_model_config

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUILTIN_FOLDER = REPO_ROOT / "data" / "builtin"


class BestRQBrain(sb.Brain):
    """Masked prediction of frozen random-projection codes; logs every ``log_interval`` steps."""

    def on_fit_start(self):
        """Recover the checkpoint and start the first logging interval."""
        super().on_fit_start()
        self._reset_interval()

    def _reset_interval(self):
        self.interval = {"loss": 0.0, "batches": 0, "correct": 0, "masked": 0, "audio_s": 0.0}
        self.interval_start = time.time()

    def compute_forward(self, batch, stage):
        """Run the whole BEST-RQ forward (seeded masks outside training)."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig  # (batch, samples), (batch,)
        generator = None if stage == sb.Stage.TRAIN else self.eval_generator
        return self.modules.model(wavs, wav_lens, generator=generator)

    def compute_objectives(self, outputs, batch, stage):
        """The masked cross-entropy; counts correct masked predictions."""
        self.stage_correct += int(outputs["correct"])
        self.stage_masked += int(outputs["num_masked"])
        return outputs["loss"]

    def on_fit_batch_start(self, batch, should_step):
        """Set the Noam learning rate of the coming optimiser step."""
        if should_step:  # the Noam schedule sets the lr of the step about to be taken
            self.hparams.lr_scheduler(self.optimizer)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Accumulate interval statistics; log every ``log_interval`` steps."""
        wavs, wav_lens = batch.sig
        interval = self.interval
        interval["loss"] += float(loss.detach())
        interval["batches"] += 1
        interval["correct"] += int(outputs["correct"])
        interval["masked"] += int(outputs["num_masked"])
        interval["audio_s"] += float(wav_lens.sum()) * wavs.shape[1] / self.sample_rate
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


def prepare_manifests(hparams) -> dict[str, Path]:
    """Manifests (train, valid, test): given, the built-in corpus's or LibriSpeech's."""
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

        folder = Path(hparams["builtin_folder"] or DEFAULT_BUILTIN_FOLDER)
        minutes = hparams["builtin_minutes"]
        run_on_main(
            ensure_builtin_corpus,
            args=[folder],
            kwargs={} if minutes is None else {"minutes": minutes},
        )
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


def dataio_prepare(hparams, manifests):
    """Datasets with a ``sig`` item and their dynamic batch samplers."""

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    datasets = {}
    for split, csv in manifests.items():
        dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path=str(csv))
        if split == "train":
            dataset = dataset.filtered_sorted(
                sort_key="duration",
                key_max_value={"duration": hparams["avoid_if_longer_than"]},
                key_min_value={"duration": hparams["avoid_if_shorter_than"]},
            )
        else:
            dataset = dataset.filtered_sorted(sort_key="duration")
        if len(dataset) == 0:
            raise ValueError(f"the {split} manifest {csv} has no usable utterance")
        datasets[split] = dataset
    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), audio_pipeline)
    sb.dataio.dataset.set_output_keys(list(datasets.values()), ["id", "sig"])

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


def audio_batches(brain, dataset, batch_sampler):
    """A re-iterable of (wavs, wav_lens) over ``dataset`` (no DDP sharding)."""
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_sampler=batch_sampler, num_workers=brain.hparams.num_workers
    )

    class _Batches:
        def __iter__(self):
            for batch in loader:
                yield batch.sig

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
        (output_folder / "ddp_check.json").write_text(json.dumps(check, indent=2) + "\n")
    if len(set(digests)) != 1:
        raise RuntimeError(f"model state differs across DDP ranks: {digests}")


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if isinstance(run_opts.optimizer_step_limit, str):  # SpeechBrain 1.1.2 parses it as str
        limit = int(run_opts.optimizer_step_limit)
        run_opts = dataclasses.replace(run_opts, optimizer_step_limit=limit)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)  # unknown override keys raise here
    output_folder = Path(hparams["output_folder"])
    sb.create_experiment_directory(
        experiment_directory=str(output_folder),
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    manifests = prepare_manifests(hparams)
    datasets, samplers = dataio_prepare(hparams, manifests)

    model = hparams["modules"]["model"]
    if if_main_process():
        save_model_config(model, output_folder)  # all load_ssl_encoder needs besides weights
    brain = BestRQBrain(
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
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs={
            "batch_sampler": samplers["train"],
            "num_workers": hparams["num_workers"],
        },
        valid_loader_kwargs={
            "batch_sampler": samplers["valid"],
            "num_workers": hparams["num_workers"],
        },
    )
    check_ddp_parameters(model, output_folder)

    if if_main_process():
        results = proof_of_learning(
            model,
            audio_batches(brain, datasets["test"], samplers["test"]),
            train_batches=audio_batches(brain, datasets["train"], samplers["train"]),
            seed=hparams["eval_seed"],
            max_train_utterances=hparams["majority_max_utterances"],
            max_batches=brain.debug_batches if brain.debug else None,
        )
        results["optimizer_steps"] = brain.optimizer_step
        results["test_manifest"] = str(manifests["test"])
        table = results_markdown(results)
        (output_folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (output_folder / "results.md").write_text(
            f"# BEST-RQ masked-prediction accuracy on held-out speakers\n\n"
            f"Model: `{model.config['encoder']}`, {brain.optimizer_step} optimiser steps; "
            f"test set `{manifests['test']}`.\n\n{table}\n"
        )
        print(table)
        logger.info("results written to %s", output_folder / "results.md")


def shutdown_distributed() -> None:
    """Wait for every rank, then tear the process group down.

    A rank that leaves while gloo's threads still serve the group dies with
    ``terminate called without an active exception`` (SIGABRT) and the launcher
    reports the whole run as failed, although every rank finished its work.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
    shutdown_distributed()  # not on an exception: the other ranks may never reach the barrier
