"""Speech Commands v1 → keyword spotting manifests (10 keywords, ``_unknown_``, ``_silence_``).

Expected layout (``speech_commands_v0.01.tar.gz`` unpacked)::

    <data_folder>/<word>/<speaker_hash>_nohash_<n>.wav
    <data_folder>/validation_list.txt      # "<word>/<file>.wav", one a line
    <data_folder>/testing_list.txt
    <data_folder>/_background_noise_/*.wav

Files in ``validation_list.txt`` form ``dev``, those in ``testing_list.txt`` form ``test``, the
rest ``train``. Words outside the 10 keywords are labelled ``_unknown_``. ``_silence_`` clips are
cut from the background noise: every file is cut into consecutive ``silence_seconds`` pieces;
piece ``k`` (counted over the sorted files) goes to test when ``k % 10 == 0``, to dev when
``k % 10 == 1``, else to train, so the splits never share noise; each split takes the first
``silence_percent`` % of its size in pieces. The pieces are written to
``<save_folder>/silence/<split>/`` (deterministic, resumable).

SUPERB tests on the separate ``speech_commands_test_set_v0.01`` archive (folders named by label,
including ``_silence_`` and ``_unknown_``); pass its folder as ``test_folder`` to use it for
``test.csv`` instead of ``testing_list.txt``.
"""

import logging
from pathlib import Path

import soundfile as sf

from speechbrain_ext.data.checks import (
    AudioChecker,
    SkipCounter,
    require_file,
    require_folder,
)
from speechbrain_ext.data.manifest import outputs_exist, write_manifest

logger = logging.getLogger(__name__)

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
NOISE_FOLDER = "_background_noise_"


def label_of(word: str) -> str:
    """The KS label of a Speech Commands folder name.

    Example
    -------
    >>> label_of("yes"), label_of("marvin"), label_of("_silence_")
    ('yes', '_unknown_', '_silence_')
    """
    if word in KEYWORDS or word in (UNKNOWN, SILENCE):
        return word
    return UNKNOWN


def _read_list(path: Path) -> set[str]:
    with open(path, encoding="utf-8") as handle:
        return {line.strip() for line in handle if line.strip()}


def _utt_row(path: Path, word: str, checker: AudioChecker) -> dict | None:
    duration = checker.duration(path)
    if duration is None:
        return None
    speaker = path.stem.split("_nohash_")[0]
    return {
        "ID": f"{word}/{path.stem}",
        "duration": duration,
        "wav": str(path.resolve()),
        "spk_id": speaker,
        "label": label_of(word),
    }


def _silence_pieces(noise_dir: Path, seconds: float, checker: AudioChecker):
    """Yield (index, source file, start frame, frames) over every background-noise piece."""
    index = 0
    for path in sorted(noise_dir.glob("*.wav")):
        info = checker.info(path)
        if info is None:
            continue
        length = int(round(seconds * info.samplerate))
        for start in range(0, info.frames - length + 1, length):
            yield index, path, start, length
            index += 1


def prepare_speech_commands(
    data_folder,
    save_folder,
    *,
    test_folder=None,
    silence_percent: float = 10.0,
    silence_seconds: float = 1.0,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
    sample_rate: int = 16000,
) -> dict[str, Path]:
    """Write ``train.csv``, ``dev.csv``, ``test.csv`` with a ``label`` column.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root (layout in the module docstring) and output folder.
    test_folder : str or Path, optional
        The separate v0.01 test-set archive's folder (SUPERB's test set).
    silence_percent : float
        ``_silence_`` clips per split, as a percentage of that split's other clips.
    silence_seconds : float
        Length of each ``_silence_`` clip.
    skip_prep, on_bad_audio, sample_rate
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        ``train``, ``dev``, ``test`` → path.
    """
    save_folder = Path(save_folder)
    outputs = {split: save_folder / f"{split}.csv" for split in ("train", "dev", "test")}
    if skip_prep or outputs_exist(outputs.values(), what="Speech Commands"):
        return outputs

    root = require_folder(data_folder, what="Speech Commands data_folder")
    dev_list = _read_list(require_file(root / "validation_list.txt", what="Speech Commands"))
    test_list = _read_list(require_file(root / "testing_list.txt", what="Speech Commands"))
    noise_dir = require_folder(root / NOISE_FOLDER, what="Speech Commands background noise")
    checkers = {
        split: AudioChecker(
            SkipCounter(f"speech_commands/{split}"),
            sample_rate=sample_rate,
            on_bad_audio=on_bad_audio,
        )
        for split in outputs
    }
    rows = {split: [] for split in outputs}
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != NOISE_FOLDER):
        for path in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{path.name}"
            if rel in test_list:
                if test_folder is not None:
                    continue
                split = "test"
            else:
                split = "dev" if rel in dev_list else "train"
            row = _utt_row(path, word_dir.name, checkers[split])
            if row is not None:
                rows[split].append(row)
    for listed, split in ((dev_list, "dev"), (test_list, "test")):
        missing = [rel for rel in sorted(listed) if not (root / rel).is_file()]
        for rel in missing:
            checkers[split].skips.skip("listed file without audio", rel)

    if test_folder is not None:
        test_root = require_folder(test_folder, what="Speech Commands test_folder")
        for word_dir in sorted(p for p in test_root.iterdir() if p.is_dir()):
            for path in sorted(word_dir.glob("*.wav")):
                row = _utt_row(path, word_dir.name, checkers["test"])
                if row is not None:
                    rows["test"].append(row)

    wanted = {
        split: round(len(split_rows) * silence_percent / 100)
        for split, split_rows in rows.items()
        if not (split == "test" and test_folder is not None)
    }
    noise_checker = AudioChecker(
        SkipCounter("speech_commands/_background_noise_"),
        sample_rate=sample_rate,
        on_bad_audio=on_bad_audio,
    )
    for index, source, start, length in _silence_pieces(noise_dir, silence_seconds, noise_checker):
        split = "test" if index % 10 == 0 else "dev" if index % 10 == 1 else "train"
        if wanted.get(split, 0) <= 0:
            continue
        wanted[split] -= 1
        piece = save_folder / "silence" / split / f"{source.stem}_{index:05d}.wav"
        if not piece.is_file():
            data, rate = sf.read(source, start=start, frames=length, dtype="float32")
            piece.parent.mkdir(parents=True, exist_ok=True)
            sf.write(piece, data, rate, subtype="PCM_16")
        rows[split].append(
            {
                "ID": f"{SILENCE}/{piece.stem}",
                "duration": round(length / sample_rate, 6),
                "wav": str(piece.resolve()),
                "spk_id": "noise",
                "label": SILENCE,
            }
        )
    short = {split: n for split, n in wanted.items() if n > 0}
    if short:
        logger.warning(
            "speech_commands: background noise too short for the asked _silence_ share; "
            "missing clips per split: %s",
            short,
        )
    noise_checker.skips.log(logger)
    for split, split_rows in rows.items():
        checkers[split].skips.log(logger)
        write_manifest(outputs[split], split_rows, extra_columns=["label"])
    return outputs
