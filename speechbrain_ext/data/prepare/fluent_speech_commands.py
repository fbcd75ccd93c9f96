"""Fluent Speech Commands → intent classification manifests.

Expected layout (``data_folder`` is ``fluent_speech_commands_dataset`` or its parent)::

    <data_folder>/data/{train,valid,test}_data.csv
        # columns: (index), path, speakerId, transcription, action, object, location
    <data_folder>/wavs/speakers/<speakerId>/<uuid>.wav

``path`` in the csv is relative to the dataset folder (``wavs/speakers/<spk>/<uuid>.wav``).
Outputs ``<save_folder>/{train,dev,test}.csv`` with ``action, object, location, intent``
(``action_object_location``, as SUPERB's IC labels) and ``wrd`` (upper-cased transcription).
"""

import csv
import logging
from pathlib import Path

from speechbrain_ext.data.checks import AudioChecker, SkipCounter, require_folder
from speechbrain_ext.data.manifest import outputs_exist, write_manifest

logger = logging.getLogger(__name__)

COLUMNS = ["action", "object", "location", "intent", "wrd"]
_SPLITS = {"train": "train_data.csv", "dev": "valid_data.csv", "test": "test_data.csv"}
_NEEDED = {"path", "speakerId", "transcription", "action", "object", "location"}


def _root(data_folder) -> Path:
    data_folder = require_folder(data_folder, what="Fluent Speech Commands data_folder")
    nested = data_folder / "fluent_speech_commands_dataset"
    return nested if nested.is_dir() else data_folder


def prepare_fluent_speech_commands(
    data_folder,
    save_folder,
    *,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
    sample_rate: int = 16000,
) -> dict[str, Path]:
    """Write ``train.csv``, ``dev.csv`` (from ``valid_data.csv``) and ``test.csv``.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root (layout in the module docstring) and output folder.
    skip_prep, on_bad_audio, sample_rate
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        ``train``, ``dev``, ``test`` → path.
    """
    save_folder = Path(save_folder)
    outputs = {split: save_folder / f"{split}.csv" for split in _SPLITS}
    if skip_prep or outputs_exist(outputs.values(), what="Fluent Speech Commands"):
        return outputs

    root = _root(data_folder)
    data_dir = require_folder(root / "data", what="Fluent Speech Commands csv folder")
    for split, name in _SPLITS.items():
        table = data_dir / name
        if not table.is_file():
            raise FileNotFoundError(
                f"Fluent Speech Commands split {split!r}: file not found: {table}"
            )
        checker = AudioChecker(
            SkipCounter(f"fluent_speech_commands/{split}"),
            sample_rate=sample_rate,
            on_bad_audio=on_bad_audio,
        )
        rows = []
        with open(table, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = _NEEDED - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{table}: missing column(s) {sorted(missing)}")
            for entry in reader:
                wav = root / entry["path"]
                duration = checker.duration(wav)
                if duration is None:
                    continue
                action, obj, location = entry["action"], entry["object"], entry["location"]
                rows.append(
                    {
                        "ID": wav.stem,
                        "duration": duration,
                        "wav": str(wav.resolve()),
                        "spk_id": entry["speakerId"],
                        "action": action,
                        "object": obj,
                        "location": location,
                        "intent": f"{action}_{obj}_{location}",
                        "wrd": " ".join(entry["transcription"].upper().split()),
                    }
                )
        checker.skips.log(logger)
        write_manifest(outputs[split], rows, extra_columns=COLUMNS)
    return outputs
