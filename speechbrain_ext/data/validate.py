r"""Validate a recipe's manifests before anything trains on them.

:func:`validate_manifests` reads the CSV of every split and either stops with an error that
names the file (and row) or drops rows and counts them, one summary line per split:

- **errors**: a missing manifest, a missing required column, a split without rows, a row with
  a missing value or too many fields, duplicate IDs within a split or across splits, and (with
  ``check_audio``) a missing, empty or unreadable audio file, a sample rate other than
  ``sample_rate``, or a file that is not mono (stereo is rejected, never downmixed silently:
  convert the corpus first).
- **dropped and counted**: rows whose ``duration`` is not a finite number > 0 (NaN, inf,
  negative, zero, unparsable), and rows outside ``[min_duration, max_duration]``.

When rows were dropped, the cleaned manifest ``<output_folder>/<split>.validated.csv`` (the same
columns, the kept rows in their order) is written atomically and returned in place of the
original; a split with nothing dropped keeps its own path.

Example
-------
>>> import numpy as np, soundfile as sf
>>> tmp = getfixture("tmp_path")
>>> sf.write(tmp / "a.wav", np.zeros(1600, dtype="float32"), 16000)
>>> _ = (tmp / "train.csv").write_text(
...     f"ID,duration,wav\na,0.1,{tmp / 'a.wav'}\nb,nan,{tmp / 'a.wav'}\n")
>>> manifests, report = validate_manifests({"train": tmp / "train.csv"}, output_folder=tmp / "ok")
>>> manifests["train"].name, report["train"]["kept"], report["train"]["dropped"]
('train.validated.csv', 1, {'invalid duration': 1})
"""

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechbrain_ext.data.checks import (
    AudioChecker,
    BadAudioError,
    SkipCounter,
    check_unique_ids,
    find_duplicates,
)
from speechbrain_ext.data.manifest import write_table

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("ID", "duration", "wav")
INVALID_DURATION = "invalid duration"


def _read_rows(split: str, path: Path, required_columns: Sequence[str]) -> tuple[list, list]:
    """(columns, rows) of one manifest; errors name the file, the column or the row."""
    if not path.is_file():
        raise FileNotFoundError(f"manifest of split {split!r} not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        missing = [column for column in required_columns if column not in columns]
        if missing:
            raise ValueError(
                f"manifest {path} (split {split!r}) has no column(s) {missing}; "
                f"its columns: {columns}"
            )
        rows = list(reader)
    if not rows:
        raise ValueError(f"manifest {path} (split {split!r}) has no rows")
    for number, row in enumerate(rows, start=1):
        if None in row:
            raise ValueError(f"{path} row {number}: more fields than the header's {columns}")
        empty = [column for column in columns if row[column] is None]
        if empty:
            raise ValueError(f"{path} row {number}: no value for column(s) {empty}")
    return columns, rows


def _duration(value: str) -> float | None:
    """The duration in seconds, or None unless it is a finite number > 0."""
    try:
        duration = float(value)
    except (TypeError, ValueError):
        return None
    return duration if math.isfinite(duration) and duration > 0 else None


def _audio_path(wav: str, replacements: Mapping[str, str]) -> str:
    for key, value in replacements.items():  # SpeechBrain's ``$data_root`` style
        wav = wav.replace(f"${key}", str(value))
    return wav


def _check_audio(path: Path, number: int, wav: str, checker: AudioChecker) -> None:
    """Raise unless ``wav`` (row ``number`` of ``path``) is a readable mono file at the rate."""
    if not os.path.isfile(wav):
        raise FileNotFoundError(f"{path} row {number}: audio file not found: {wav}")
    try:
        info = checker.info(wav)
    except BadAudioError as error:
        raise BadAudioError(f"{path} row {number}: {error}") from error
    if info.channels != 1:
        raise BadAudioError(
            f"{path} row {number}: {wav} has {info.channels} channels, mono expected "
            "(downmix the corpus first; it is not done silently here)"
        )


def validate_manifests(
    manifests: Mapping[str, str | os.PathLike],
    *,
    required_columns: Sequence[str] = REQUIRED_COLUMNS,
    min_duration: float | None = None,
    max_duration: float | None = None,
    check_audio: bool = True,
    sample_rate: int | None = 16000,
    output_folder: str | os.PathLike | None = None,
    replacements: Mapping[str, str] | None = None,
) -> tuple[dict, dict]:
    r"""Check every split's manifest; return the manifests to use and a report.

    Arguments
    ---------
    manifests : mapping of str to path
        Split name (``"train"``, ``"valid"``...) → CSV manifest.
    required_columns : sequence of str
        Columns every manifest must have (``duration`` and ``wav`` also enable the duration
        and audio checks; ``ID`` the uniqueness checks).
    min_duration, max_duration : float, optional
        Keep rows whose duration is in ``[min_duration, max_duration]`` seconds; the others are
        dropped and counted.
    check_audio : bool
        Open every audio file's header: it must exist, be readable, non-empty, at
        ``sample_rate`` and mono. ``False`` skips this (a header read per row).
    sample_rate : int or None
        Expected sample rate; ``None`` accepts any.
    output_folder : str or Path, optional
        Where cleaned manifests ``<split>.validated.csv`` are written when rows were dropped;
        dropping rows without it is a ``ValueError`` (the original CSV is never edited).
    replacements : mapping, optional
        ``{"data_root": "/data"}`` turns ``$data_root/a.wav`` into ``/data/a.wav`` for the
        audio checks, as SpeechBrain's ``DynamicItemDataset.from_csv(replacements=...)``.

    Returns
    -------
    manifests : dict
        Split → :class:`~pathlib.Path` of the manifest to train on (the original, or the
        cleaned one).
    report : dict
        Split → ``{"manifest", "output", "rows", "kept", "dropped": {reason: count},
        "hours"}`` (hours of the kept rows; ``None`` without a ``duration`` column).

    Raises
    ------
    FileNotFoundError
        A missing manifest or audio file (naming the file and the row).
    ValueError
        A missing column, an empty split, duplicate IDs (within or across splits), or
        rows dropped with no ``output_folder``; :class:`~speechbrain_ext.data.checks.
        BadAudioError` (a ``ValueError``) for unusable audio: unreadable, empty, another
        sample rate, not mono.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> _ = (tmp / "dev.csv").write_text("ID,duration,wav\nx,1.0,/x.wav\n")
    >>> _ = (tmp / "test.csv").write_text("ID,duration,wav\nx,2.0,/y.wav\n")
    >>> validate_manifests({"dev": tmp / "dev.csv", "test": tmp / "test.csv"},
    ...                    check_audio=False)
    Traceback (most recent call last):
    ...
    ValueError: 1 ID(s) in more than one split: x (dev: .../dev.csv, test: .../test.csv)
    """
    if not manifests:
        raise ValueError("validate_manifests: no manifests given")
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ValueError(f"min_duration {min_duration} > max_duration {max_duration}")
    replacements = dict(replacements or {})
    paths = {split: Path(path) for split, path in manifests.items()}
    tables = {split: _read_rows(split, path, required_columns) for split, path in paths.items()}

    owner: dict[str, list[str]] = {}  # ID → splits
    if "ID" in required_columns:
        for split, (_, rows) in tables.items():
            check_unique_ids((row["ID"] for row in rows), where=f"manifest {paths[split]}")
            for row in rows:
                owner.setdefault(row["ID"], []).append(split)
        # Duplicates within a split were errors above: any repeat now spans two splits.
        shared = find_duplicates(row["ID"] for _, rows in tables.values() for row in rows)
        if shared:
            splits = list(dict.fromkeys(s for utt in shared for s in owner[utt]))
            listed = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
            files = ", ".join(f"{split}: {paths[split]}" for split in splits)
            raise ValueError(f"{len(shared)} ID(s) in more than one split: {listed} ({files})")

    results, report = {}, {}
    for split, (columns, rows) in tables.items():
        path = paths[split]
        skips = SkipCounter(f"{split} ({path})", examples=1)
        checker = AudioChecker(
            SkipCounter(f"split {split!r}"), sample_rate=sample_rate, on_bad_audio="error"
        )
        kept, seconds = [], 0.0
        has_duration = "duration" in columns
        for number, row in enumerate(rows, start=1):
            if has_duration:
                duration = _duration(row["duration"])
                if duration is None:
                    skips.skip(INVALID_DURATION, f"row {number}: {row['duration']!r}")
                    continue
                if min_duration is not None and duration < min_duration:
                    skips.skip(f"shorter than {min_duration} s", f"row {number}: {duration}")
                    continue
                if max_duration is not None and duration > max_duration:
                    skips.skip(f"longer than {max_duration} s", f"row {number}: {duration}")
                    continue
                seconds += duration
            if check_audio and "wav" in columns:
                _check_audio(path, number, _audio_path(row["wav"], replacements), checker)
            kept.append(row)
        if not kept:
            raise ValueError(f"{skips.summary()}: no row of split {split!r} is left")
        output = path
        if skips.total:
            if output_folder is None:
                raise ValueError(f"{skips.summary()}; give output_folder for the cleaned CSV")
            output = write_table(Path(output_folder) / f"{split}.validated.csv", kept, columns)
        hours = seconds / 3600 if has_duration else None
        line = f"{split} ({path}): {len(rows)} row(s), kept {len(kept)}"
        if hours is not None:
            line += f" ({hours:.2f} h)"
        if skips.total:
            line += "; " + skips.summary().split(": ", 1)[1] + f"; cleaned manifest {output}"
        logger.info(line)
        results[split] = output
        report[split] = {
            "manifest": str(path),
            "output": str(output),
            "rows": len(rows),
            "kept": len(kept),
            "dropped": dict(skips.counts),
            "hours": hours,
        }
    return results, report
