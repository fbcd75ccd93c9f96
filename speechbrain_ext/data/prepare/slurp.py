"""SLURP → intent (scenario, action) and slot manifests, one row per recording.

Expected layout (text from the SLURP repository, audio from its two tarballs)::

    <data_folder>/dataset/slurp/{train,devel,test}.jsonl   # + train_synthetic.jsonl
    <data_folder>/dataset/slurp/metadata.json             # optional: speaker of each recording
    <data_folder>/slurp_real/audio-<n>[-headset].flac
    <data_folder>/slurp_synth/audio-<n>.flac

A jsonl line holds ``slurp_id``, ``sentence``, ``sentence_annotation``
(``wake me up at [time : five am]``), ``scenario``, ``action``, ``intent``
(``scenario_action``) and ``recordings`` (a list of ``{"file": ...}``). ``data_folder`` may also
be the SLURP repository root holding ``dataset/`` next to ``scripts/``.

Outputs ``<save_folder>/{train,dev,test}.csv`` with ``scenario, action, intent, wrd, slots``:
``wrd`` is the upper-cased sentence, ``slots`` is ``type=value;type=value`` from the
annotation. ``spk_id`` comes from ``metadata.json`` (``usrid``) when present, else is
``unknown`` (logged); synthetic recordings get ``synth``.
"""

import json
import logging
import re
from pathlib import Path

from speechbrain_ext.data.checks import AudioChecker, SkipCounter, require_folder
from speechbrain_ext.data.manifest import outputs_exist, write_manifest

logger = logging.getLogger(__name__)

_SLOT = re.compile(r"\[\s*([^:\]]+?)\s*:\s*([^\]]*?)\s*\]")
COLUMNS = ["scenario", "action", "intent", "wrd", "slots"]


def parse_slurp_slots(annotation: str) -> str:
    """``[type : value]`` spans of a SLURP annotation as ``type=value;type=value``.

    Example
    -------
    >>> parse_slurp_slots("wake me up at [time : five am] [date : this week]")
    'time=five am;date=this week'
    >>> parse_slurp_slots("hello there")
    ''
    """
    return ";".join(f"{k}={v}" for k, v in _SLOT.findall(annotation))


def _speakers(meta_path: Path) -> dict[str, str]:
    if not meta_path.is_file():
        return {}
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    speakers = {}
    for record in meta.values():
        for name, info in record.get("recordings", {}).items():
            if isinstance(info, dict) and "usrid" in info:
                speakers[name] = str(info["usrid"])
    return speakers


def prepare_slurp(
    data_folder,
    save_folder,
    *,
    train_splits=("train", "train_synthetic"),
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
    sample_rate: int = 16000,
) -> dict[str, Path]:
    """Write ``train.csv`` (from ``train_splits``), ``dev.csv`` (devel) and ``test.csv``.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root (layout in the module docstring) and output folder.
    train_splits : sequence of str
        jsonl files making the training manifest: ``train`` (real) and/or
        ``train_synthetic``.
    skip_prep, on_bad_audio, sample_rate
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        ``train``, ``dev``, ``test`` → path.
    """
    unknown = set(train_splits) - {"train", "train_synthetic"}
    if unknown or not train_splits:
        raise ValueError(
            f"train_splits must be from ('train', 'train_synthetic'), got {train_splits}"
        )
    save_folder = Path(save_folder)
    outputs = {split: save_folder / f"{split}.csv" for split in ("train", "dev", "test")}
    if skip_prep or outputs_exist(outputs.values(), what="SLURP"):
        return outputs

    data_folder = require_folder(data_folder, what="SLURP data_folder")
    text_dir = require_folder(data_folder / "dataset" / "slurp", what="SLURP text folder")
    speakers = _speakers(text_dir / "metadata.json")
    sources = {"train": list(train_splits), "dev": ["devel"], "test": ["test"]}
    for split, jsonls in sources.items():
        checker = AudioChecker(
            SkipCounter(f"slurp/{split}"), sample_rate=sample_rate, on_bad_audio=on_bad_audio
        )
        rows, unknown_speakers = [], 0
        for jsonl in jsonls:
            synthetic = jsonl == "train_synthetic"
            audio_dir = require_folder(
                data_folder / ("slurp_synth" if synthetic else "slurp_real"),
                what=f"SLURP audio for {jsonl}.jsonl",
            )
            path = text_dir / f"{jsonl}.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"SLURP split {jsonl!r}: file not found: {path}")
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                        scenario, action = item["scenario"], item["action"]
                        recordings = item["recordings"]
                        sentence, annotation = item["sentence"], item["sentence_annotation"]
                    except (json.JSONDecodeError, KeyError) as error:
                        raise ValueError(
                            f"{path} line {number}: bad SLURP entry: {error}"
                        ) from None
                    intent = item.get("intent", f"{scenario}_{action}")
                    for recording in recordings:
                        name = recording["file"]
                        duration = checker.duration(audio_dir / name)
                        if duration is None:
                            continue
                        if synthetic:
                            speaker = "synth"
                        elif name in speakers:
                            speaker = speakers[name]
                        else:
                            speaker, unknown_speakers = "unknown", unknown_speakers + 1
                        rows.append(
                            {
                                "ID": Path(name).stem,
                                "duration": duration,
                                "wav": str((audio_dir / name).resolve()),
                                "spk_id": speaker,
                                "scenario": scenario,
                                "action": action,
                                "intent": intent,
                                "wrd": " ".join(sentence.upper().split()),
                                "slots": parse_slurp_slots(annotation),
                            }
                        )
        checker.skips.log(logger)
        if unknown_speakers:
            logger.info(
                "slurp/%s: %d recording(s) without a speaker in metadata.json",
                split,
                unknown_speakers,
            )
        write_manifest(outputs[split], rows, extra_columns=COLUMNS)
    return outputs
