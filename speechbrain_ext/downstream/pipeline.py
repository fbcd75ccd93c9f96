"""The steps every kind of downstream task shares (:mod:`~speechbrain_ext.downstream.kinds`).

A kind (1) creates the experiment folder with :func:`setup_experiment`, (2) gets its manifests with
:func:`task_split_manifests`, (3) builds the frozen encoder and its learned layer weighting with
:func:`build_featurizer`, (4) loads datasets whose features come from the on-disk cache (or from
audio when fine-tuning) with :func:`feature_datasets`, (5) trains a probe with a Brain of
:mod:`speechbrain_ext.downstream.brains` and (6) records the score with :func:`write_results`.

Yaml keys read here (every task's yaml defines them): ``seed``, ``encoder``, ``pretrained``,
``freeze_encoder``, ``layer_norm``, ``cache_features``, ``cache_folder``, ``cache_batch_size``,
``output_folder``, ``save_folder``, ``train_log``, ``data_folder``, ``manifest_root``,
``builtin_folder``, ``builtin_minutes``, ``builtin_seed``, ``manifest_folder``,
``prepare_options``, ``probe``, ``probe_options``.
"""

import json
import logging
import time
from pathlib import Path

import speechbrain as sb
import torch
import yaml
from speechbrain.dataio.dataio import read_audio
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_ext.data.manifest import read_manifest
from speechbrain_ext.downstream.baselines import encoder_fingerprint, load_mp3s_encoder
from speechbrain_ext.downstream.brains import uses_cache
from speechbrain_ext.downstream.cache import LayerFeatureCache, encoder_checksum
from speechbrain_ext.downstream.featurizer import SSLFeaturizer
from speechbrain_ext.downstream.probes import build_probe
from speechbrain_ext.downstream.task import SPLITS, Task, task_manifests
from speechbrain_ext.ssl import training
from speechbrain_ext.ssl.training import RUN_FILE, RunFolderMismatchError

logger = logging.getLogger(__name__)
RESULTS_FILE = "results.json"


def run_identity(hparams: dict) -> dict:
    """What makes a task run: its resolved yaml (every key, the folders included) and the
    fingerprint of the probed encoder's files (:func:`encoder_fingerprint`).
    """
    return {
        "encoder": encoder_fingerprint(hparams["encoder"], pretrained=hparams["pretrained"]),
        "hparams": json.loads(json.dumps(dict(hparams), default=str)),
    }


def check_run_folder(hparams: dict, **more) -> None:
    """Stop unless ``output_folder`` is new or holds a run of this very task, yaml and encoder.

    SpeechBrain resumes a probe from the checkpoints it finds, so a folder left by a run on
    other encoder weights (a retrained model under the same path) or other settings would be
    scored as if it were this one. The first call records :func:`run_identity` (and ``more``:
    the manifests' fingerprint, once they are prepared) in ``run.json``; a differing record
    raises :class:`~speechbrain_ext.ssl.training.RunFolderMismatchError` naming the keys, before
    anything in the folder is touched, and so does a folder holding a run but no record (made
    before records existed: it cannot be checked).
    """
    folder = Path(hparams["output_folder"])
    hint = f"delete {folder} to run it again, or pass another --work_folder"
    made = [folder / "save", folder / RESULTS_FILE, *folder.glob("fold_*")]
    if not (folder / RUN_FILE).is_file() and any(path.exists() for path in made):
        raise RunFolderMismatchError(
            f"{folder} holds a run with no {RUN_FILE} record of its encoder and settings, so "
            f"it cannot be checked against this one. Nothing was changed: {hint}."
        )
    identity = more or run_identity(hparams)  # the first call records the run's identity
    training.check_run_folder(folder, identity, fresh_hint=hint)


def setup_experiment(hparams: dict) -> None:
    """Create ``output_folder`` with the resolved yaml (``hyperparams.yaml``) and the log file
    (``log.txt``), and seed torch with ``seed``, as SpeechBrain's recipes do.
    """
    folder = Path(hparams["output_folder"])
    sb.create_experiment_directory(experiment_directory=str(folder), save_env_desc=False)
    text = yaml.safe_dump(dict(hparams), sort_keys=False, allow_unicode=True)
    (folder / "hyperparams.yaml").write_text(
        f"# Resolved by speechbrain_ext.downstream ({time.strftime('%Y-%m-%d')})\n"
        "# yamllint disable\n" + text,
        encoding="utf-8",
    )
    torch.manual_seed(hparams["seed"])


def task_split_manifests(hparams: dict, task: Task, **options) -> dict[str, Path]:
    """The task's manifests (the built-in corpus, or the real one when ``data_folder`` is set),
    validated before any training: columns, durations, readable mono 16 kHz audio, unique IDs
    within and across splits (:func:`~speechbrain_ext.data.validate.validate_manifests`; rows
    with bad durations are dropped, counted in the log, and a cleaned copy is used).
    """
    from speechbrain_ext.data.validate import validate_manifests

    manifests = task_manifests(
        task,
        data_folder=hparams["data_folder"],
        manifest_root=hparams["manifest_root"],
        builtin_folder=hparams["builtin_folder"],
        save_folder=hparams["manifest_folder"],
        builtin_options={"minutes": hparams["builtin_minutes"], "seed": hparams["builtin_seed"]},
        prepare_options=hparams["prepare_options"],
        **options,
    )
    splits = {split: manifests[split] for split in task.splits}
    folder = Path(hparams["output_folder"]) / "manifests_checked"
    for split in splits:  # cleaned copies of an earlier run are redone, never reused unchecked
        (folder / f"{split}.validated.csv").unlink(missing_ok=True)
    checked, _ = validate_manifests(splits, output_folder=folder)
    return {**manifests, **checked}


def build_featurizer(hparams: dict) -> SSLFeaturizer:
    """The encoder named by ``encoder``/``pretrained`` behind a learned layer weighting."""
    encoder = load_mp3s_encoder(
        hparams["encoder"],
        pretrained=hparams["pretrained"],
        seed=hparams["seed"],
        fbank_stack=hparams.get("fbank_stack", 1),  # MP3S: 4 (40 ms); SUPERB's FBANK: 1
    )
    return SSLFeaturizer(
        encoder=encoder, freeze=hparams["freeze_encoder"], normalize=hparams["layer_norm"]
    )


def feature_datasets(
    manifests: dict, featurizer: SSLFeaturizer, hparams: dict, *, device: str = "cpu"
) -> dict[str, DynamicItemDataset]:
    """One dataset per split whose items carry ``id`` and the features' source.

    With a cache (:func:`uses_cache`), every utterance's layers are computed once (misses only)
    and the datasets provide ``layers`` (frames, layers, dim); otherwise they provide ``sig``
    (the audio) and the encoder runs in the training loop. ``dev`` and ``test`` are sorted by
    duration; ``train`` is shuffled by the dataloader.
    """
    datasets = {split: DynamicItemDataset.from_csv(manifests[split]) for split in SPLITS}
    if uses_cache(hparams):
        cache = LayerFeatureCache(hparams["cache_folder"], key=encoder_checksum(featurizer.encoder))
        cache.write_info(
            {
                "encoder": str(hparams["encoder"]),
                "pretrained": bool(hparams["pretrained"]),
                "num_layers": featurizer.num_layers,
                "hidden_size": featurizer.hidden_size,
            }
        )
        featurizer.to(device)
        for split in SPLITS:
            stats = cache.fill(
                featurizer,
                read_manifest(manifests[split]),
                batch_size=hparams["cache_batch_size"],
                device=device,
            )
            logger.info("%s features: %d cached, %d computed", split, stats.hits, stats.misses)

        @takes("id", "wav")
        @provides("layers")
        def feature_pipeline(utt_id, wav):
            return cache.load(utt_id, wav)  # (frames, layers, dim)

    else:

        @takes("wav")
        @provides("sig")
        def feature_pipeline(wav):
            return read_audio(wav)

    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), feature_pipeline)
    for split in ("dev", "test"):
        datasets[split] = datasets[split].filtered_sorted(sort_key="duration")
    return datasets


def add_class_targets(datasets: dict, column: str, *, fit_on=SPLITS):
    """Add ``target`` (class index, a (1,) tensor) from ``column``; returns the fitted
    ``CategoricalEncoder``.

    The classes are those found in the ``fit_on`` splits (all by default: a class that a small
    training split lacks still gets an output, never a crash); a label outside them raises
    ``ValueError`` naming it when an item asks for its target.
    """
    encoder = CategoricalEncoder()
    labels = {row[column] for split in fit_on for row in datasets[split].data.values()}
    encoder.update_from_iterable(sorted(labels))
    where = "/".join(fit_on)

    @takes(column)
    @provides("target")
    def label_pipeline(label):
        if label not in encoder.lab2ind:
            raise ValueError(f"class {label!r} of column {column!r} is not in the {where} split")
        return torch.LongTensor([encoder.lab2ind[label]])  # (1,)

    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), label_pipeline)
    return encoder


def add_ctc_targets(datasets: dict, tokenizer, column: str = "wrd"):
    """Add ``tokens`` (CTC targets without blanks) from the transcript ``column``."""

    @takes(column)
    @provides("tokens")
    def text_pipeline(text):
        return torch.LongTensor(tokenizer.encode(text))

    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), text_pipeline)


def set_outputs(datasets: dict, hparams: dict, *keys: str) -> None:
    """Batches carry ``id``, the features (``layers`` or ``sig``) and ``keys``."""
    outputs = ["id", "layers" if uses_cache(hparams) else "sig", *keys]
    sb.dataio.dataset.set_output_keys(list(datasets.values()), outputs)


def make_probe(hparams: dict, featurizer: SSLFeaturizer, num_outputs: int):
    """The probe named by ``probe`` with ``probe_options``, sized for the features."""
    return build_probe(
        hparams["probe"],
        input_size=featurizer.hidden_size,
        num_outputs=num_outputs,
        **hparams["probe_options"],
    )


def write_results(hparams: dict, task: Task, *, value: float, layer_weights: list, **extra) -> dict:
    """Write ``<output_folder>/results.json`` (the runner reads it) and return its content.

    Arguments
    ---------
    hparams : dict
        The task's yaml.
    task : Task
        The task.
    value : float
        The test metric (``task.metric``).
    layer_weights : list of float
        The learned (normalised) layer weights.
    **extra
        Anything else to record (test stats, folds...).
    """
    results = {
        "task": task.name,
        "probe": hparams["probe"],
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
        "value": float(value),
        "encoder": str(hparams["encoder"]),
        "pretrained": bool(hparams["pretrained"]),
        "freeze_encoder": bool(hparams["freeze_encoder"]),
        "data": str(hparams["data_folder"] or hparams["manifest_root"] or "builtin"),
        "layer_weights": [float(w) for w in layer_weights],
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        **extra,
    }
    path = Path(hparams["output_folder"]) / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2) + "\n")
    logger.info("%s / %s: %s = %.2f", task.name, hparams["probe"], task.metric, value)
    return results
