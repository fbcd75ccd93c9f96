"""Writing and reading SpeechBrain CSV manifests in the schema of ``docs/manifests.md``.

Every manifest has the common columns ``ID, duration, wav, spk_id`` followed by the task's
extra columns. :func:`write_manifest` validates rows before anything is written (all columns
present, unique IDs, positive durations, at least one row) and writes atomically, so a crash
never leaves a half-written manifest that a later run would mistake for a finished one.

Example
-------
>>> tmp = getfixture("tmp_path")
>>> rows = [
...     {"ID": "u2", "duration": 1.5, "wav": "/d/u2.wav", "spk_id": "s1", "wrd": "HELLO"},
...     {"ID": "u1", "duration": 0.25, "wav": "/d/u1.wav", "spk_id": "s1", "wrd": "HI THERE"},
... ]
>>> path = write_manifest(tmp / "dev.csv", rows, extra_columns=["wrd"])
>>> print(path.read_text().strip())
ID,duration,wav,spk_id,wrd
u1,0.25,/d/u1.wav,s1,HI THERE
u2,1.5,/d/u2.wav,s1,HELLO
>>> read_manifest(path)[0]["duration"]
0.25
>>> write_manifest(tmp / "bad.csv", rows + rows[:1], extra_columns=["wrd"])
Traceback (most recent call last):
...
ValueError: manifest .../bad.csv: 1 duplicate ID(s): u2
"""

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechbrain_ext.data.checks import check_unique_ids

logger = logging.getLogger(__name__)

COMMON_COLUMNS = ("ID", "duration", "wav", "spk_id")

# Extra columns of each task folder (docs/manifests.md).
TASK_COLUMNS = {
    "librispeech": ("wrd",),
    "ks": ("label",),
    "ic": ("action", "object", "location", "intent", "wrd"),
    "slurp": ("scenario", "action", "intent", "wrd", "slots"),
    "sf": ("wrd", "slots", "slot_wrd"),
    "er": ("emo", "session"),
    "sid": (),
    "asv": (),
    "sd": ("rttm", "num_spk"),
    "qbe": ("wrd",),
    "cv": ("wrd",),
}


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value == value else "nan"
    return str(value)


def write_table(path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts with exactly ``columns``) as a CSV atomically; returns the path.

    For files that are not utterance manifests (trial lists, ground truth). Rows keep their
    order. A row missing a column, or holding an unknown one, raises ``ValueError``.
    """
    path = Path(path)
    wanted = set(columns)
    for index, row in enumerate(rows):
        if set(row) != wanted:
            missing = sorted(wanted - set(row))
            unknown = sorted(set(row) - wanted)
            raise ValueError(
                f"{path}: row {index} does not match the columns {list(columns)} "
                f"(missing {missing}, unknown {unknown})"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format(row[col]) for col in columns])
    os.replace(tmp, path)
    return path


def write_manifest(
    path, rows: Iterable[dict], *, extra_columns: Sequence[str] = (), sort: bool = True
) -> Path:
    """Validate and write an utterance manifest; returns its path.

    Arguments
    ---------
    path : str or Path
        The CSV to write (parents are created).
    rows : iterable of dict
        One dict per utterance with the common columns plus ``extra_columns``.
    extra_columns : sequence of str
        The task's columns, in order, after ``ID, duration, wav, spk_id``.
    sort : bool
        Sort rows by ID (deterministic output whatever the file-system order).

    Raises
    ------
    ValueError
        No rows, duplicate IDs, a missing or unknown column, or a duration that is not > 0.
    """
    path = Path(path)
    rows = list(rows)
    columns = list(COMMON_COLUMNS) + [c for c in extra_columns if c not in COMMON_COLUMNS]
    where = f"manifest {path}"
    if not rows:
        raise ValueError(f"{where}: no utterances to write (everything missing or skipped?)")
    check_unique_ids((row.get("ID") for row in rows), where=where)
    for row in rows:
        duration = row.get("duration")
        if not isinstance(duration, int | float) or not duration > 0:
            raise ValueError(f"{where}: utterance {row.get('ID')!r} has duration {duration!r}")
    if sort:
        rows.sort(key=lambda row: row["ID"])
    write_table(path, rows, columns)
    logger.info("wrote %s (%d utterances)", path, len(rows))
    return path


def read_manifest(path) -> list[dict]:
    """Rows of a manifest as dicts, with ``duration`` as float.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` when a common column
    is absent.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COMMON_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"manifest {path}: missing column(s) {missing}")
        rows = list(reader)
    for row in rows:
        row["duration"] = float(row["duration"])
    return rows


def read_table(path) -> list[dict]:
    """Rows of any CSV written by :func:`write_table`, all values as strings."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def outputs_exist(paths: Iterable, *, what: str = "") -> bool:
    """True when every path exists (then a preparer may skip its work; logged)."""
    paths = [Path(p) for p in paths]
    if paths and all(p.is_file() for p in paths):
        logger.info(
            "%smanifests already exist, skipping preparation: %s",
            what and what + " ",
            ", ".join(str(p) for p in paths),
        )
        return True
    return False


def convert_audio(src, dst, *, sample_rate: int = 16000) -> float:
    """Decode ``src`` (any format soundfile reads: wav, flac, mp3...), downmix to mono,
    resample to ``sample_rate`` and write a 16-bit wav at ``dst``; returns its duration.

    An existing ``dst`` is kept (conversion is resumable); its duration is read back.

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "a.flac", np.zeros((4800, 2), dtype="float32"), 48000)
    >>> convert_audio(tmp / "a.flac", tmp / "out" / "a.wav")
    0.1
    >>> sf.info(tmp / "out" / "a.wav").samplerate
    16000
    """
    import torch
    from speechbrain.dataio import audio_io
    from torchaudio.functional import resample

    dst = Path(dst)
    if not dst.is_file():
        audio, rate = audio_io.load(str(src))  # (channels, samples)
        audio = audio.mean(dim=0)  # (samples,)
        if rate != sample_rate:
            audio = resample(audio, rate, sample_rate)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.stem + ".tmp.wav")
        audio_io.save(str(tmp), audio.clamp(-1, 1).to(torch.float32), sample_rate, subtype="PCM_16")
        os.replace(tmp, dst)
    info = audio_io.info(str(dst))
    return round(info.frames / info.sample_rate, 6)
