"""LibriSpeech → one manifest per split (pretraining, ASR, PR).

Expected layout (as distributed on openslr.org, resource 12)::

    <data_folder>/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <data_folder>/<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt   # "<utt_id> WORDS ..."

``data_folder`` may also be the parent of a ``LibriSpeech/`` folder (where the archives
unpack). Output: ``<save_folder>/<split>.csv`` with ``ID, duration, wav, spk_id, wrd``.
"""

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechbrain_ext.data.checks import (
    AudioChecker,
    SkipCounter,
    check_unique_ids,
    require_folder,
)
from speechbrain_ext.data.manifest import outputs_exist, read_manifest, write_manifest

logger = logging.getLogger(__name__)

LIBRISPEECH_SPLITS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)


def librispeech_root(data_folder) -> Path:
    """The folder holding the split folders: ``data_folder`` or ``data_folder/LibriSpeech``."""
    data_folder = require_folder(data_folder, what="LibriSpeech data_folder")
    nested = data_folder / "LibriSpeech"
    if nested.is_dir() and not any((data_folder / s).is_dir() for s in LIBRISPEECH_SPLITS):
        return nested
    return data_folder


def _read_split(split_dir: Path, checker: AudioChecker, where: str) -> list[dict]:
    texts: dict[str, str] = {}
    text_ids: list[str] = []
    audio: dict[str, Path] = {}
    audio_ids: list[str] = []
    for folder, _, files in sorted(os.walk(split_dir)):
        for name in sorted(files):
            if name.endswith(".trans.txt"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    for line in handle:
                        if not line.strip():
                            continue
                        utt_id, _, words = line.strip().partition(" ")
                        texts[utt_id] = " ".join(words.upper().split())
                        text_ids.append(utt_id)
            elif name.endswith(".flac"):
                utt_id = name[: -len(".flac")]
                audio[utt_id] = Path(folder, name)
                audio_ids.append(utt_id)
    check_unique_ids(text_ids, where=f"{where} transcripts")
    check_unique_ids(audio_ids, where=f"{where} audio files")

    rows = []
    for utt_id in sorted(set(texts) | set(audio)):
        if utt_id not in audio:
            checker.skips.skip("transcript line without audio", utt_id)
            continue
        if utt_id not in texts:
            checker.skips.skip("audio without transcript", audio[utt_id])
            continue
        if not texts[utt_id]:
            checker.skips.skip("empty transcript", utt_id)
            continue
        duration = checker.duration(audio[utt_id])
        if duration is None:
            continue
        rows.append(
            {
                "ID": utt_id,
                "duration": duration,
                "wav": str(audio[utt_id].resolve()),
                "spk_id": utt_id.split("-")[0],
                "wrd": texts[utt_id],
            }
        )
    return rows


def prepare_librispeech(
    data_folder,
    save_folder,
    *,
    splits: Sequence[str] = ("train-clean-100", "dev-clean", "test-clean"),
    merge: Mapping[str, Sequence[str]] | None = None,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
    sample_rate: int = 16000,
) -> dict[str, Path]:
    """Write ``<save_folder>/<split>.csv`` for every LibriSpeech split asked for.

    Arguments
    ---------
    data_folder : str or Path
        Folder holding the split folders (or their ``LibriSpeech/`` parent); layout in the
        module docstring.
    save_folder : str or Path
        Where the manifests go.
    splits : sequence of str
        Any of ``train-clean-100, train-clean-360, train-other-500, dev-clean, dev-other,
        test-clean, test-other``.
    merge : mapping of str to sequence of str, optional
        Extra manifests concatenating prepared splits, e.g.
        ``{"train-960": ["train-clean-100", "train-clean-360", "train-other-500"]}``.
    skip_prep : bool
        Do nothing and return the paths (manifests are expected to exist).
    on_bad_audio : str
        ``"skip"`` (count and log unreadable or empty files) or ``"error"``.
    sample_rate : int
        Expected sample rate; another rate raises an error.

    Returns
    -------
    dict
        Split (and merge) name → manifest path.

    Transcript lines without audio, audio without transcript and bad audio files are skipped
    and counted in one logged warning per split; duplicate utterance IDs raise ``ValueError``;
    a missing split folder raises ``FileNotFoundError`` naming it.
    """
    unknown = [s for s in splits if s not in LIBRISPEECH_SPLITS]
    if unknown:
        raise ValueError(f"unknown LibriSpeech split(s) {unknown}; valid: {LIBRISPEECH_SPLITS}")
    merge = dict(merge or {})
    for name, parts in merge.items():
        missing = [p for p in parts if p not in splits]
        if missing:
            raise ValueError(f"merge {name!r} uses split(s) {missing} that are not prepared")
    save_folder = Path(save_folder)
    outputs = {split: save_folder / f"{split}.csv" for split in splits}
    outputs.update({name: save_folder / f"{name}.csv" for name in merge})
    if skip_prep or outputs_exist(outputs.values(), what="LibriSpeech"):
        return outputs

    root = librispeech_root(data_folder)
    for split in splits:
        split_dir = require_folder(root / split, what=f"LibriSpeech split {split!r}")
        where = f"librispeech/{split}"
        checker = AudioChecker(
            SkipCounter(where), sample_rate=sample_rate, on_bad_audio=on_bad_audio
        )
        rows = _read_split(split_dir, checker, where)
        checker.skips.log(logger)
        write_manifest(outputs[split], rows, extra_columns=["wrd"])
    for name, parts in merge.items():
        rows = [row for part in parts for row in read_manifest(outputs[part])]
        write_manifest(outputs[name], rows, extra_columns=["wrd"])
    return outputs
