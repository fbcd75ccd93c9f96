"""Validation shared by every corpus preparer.

A preparer either stops with an error that names the problem (missing folder, duplicate
IDs, wrong sample rate) or skips an item and counts it; the counts are logged once per split
(never a silent truncation). Unreadable and empty audio files are skipped by default
(``on_bad_audio="skip"``), or stop preparation with ``on_bad_audio="error"``.

Example
-------
>>> skips = SkipCounter("demo/train")
>>> skips.skip("audio without transcript", "a.flac")
>>> skips.skip("audio without transcript", "b.flac")
>>> skips.counts
{'audio without transcript': 2}
>>> skips.summary()
'demo/train: skipped 2 item(s): 2 audio without transcript (e.g. a.flac, b.flac)'
>>> check_unique_ids(["a", "b", "a"], where="demo/train")
Traceback (most recent call last):
...
ValueError: demo/train: 1 duplicate ID(s): a
"""

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import soundfile as sf

logger = logging.getLogger(__name__)

BAD_AUDIO_POLICIES = ("skip", "error")


class BadAudioError(ValueError):
    """An audio file that cannot be used (unreadable, empty, wrong sample rate)."""


def require_folder(path, *, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or ``FileNotFoundError`` naming ``what``.

    Example
    -------
    >>> require_folder("/no/such/folder", what="LibriSpeech split 'dev-clean'")
    Traceback (most recent call last):
    ...
    FileNotFoundError: LibriSpeech split 'dev-clean': folder not found: /no/such/folder
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder not found: {path}")
    return path


def require_file(path, *, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or ``FileNotFoundError`` naming ``what``.

    Example
    -------
    >>> require_file("/no/such/list.txt", what="VoxCeleb1 trial list")
    Traceback (most recent call last):
    ...
    FileNotFoundError: VoxCeleb1 trial list: file not found: /no/such/list.txt
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    return path


def find_duplicates(ids: Iterable[str]) -> list[str]:
    """IDs that occur more than once, in order of first repetition.

    Example
    -------
    >>> find_duplicates(["x", "y", "x", "z", "y", "x"])
    ['x', 'y']
    """
    seen, dups = set(), {}
    for item in ids:
        if item in seen:
            dups[item] = None
        seen.add(item)
    return list(dups)


def check_unique_ids(ids: Iterable[str], *, where: str, show: int = 5) -> None:
    """Raise ``ValueError`` naming (up to ``show``) repeated IDs."""
    dups = find_duplicates(ids)
    if dups:
        listed = ", ".join(dups[:show]) + (", ..." if len(dups) > show else "")
        raise ValueError(f"{where}: {len(dups)} duplicate ID(s): {listed}")


class SkipCounter:
    """Counts skipped items by reason and logs one summary per split.

    Arguments
    ---------
    where : str
        What is being prepared (``"librispeech/dev-clean"``), used in messages.
    examples : int
        How many example items to keep (and show) per reason.
    """

    def __init__(self, where: str, *, examples: int = 3):
        self.where = where
        self.counts: dict[str, int] = {}
        self._examples: dict[str, list[str]] = {}
        self._max_examples = examples

    def skip(self, reason: str, item) -> None:
        """Record that ``item`` was skipped because of ``reason``."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self._examples.setdefault(reason, [])
        if len(shown) < self._max_examples:
            shown.append(str(item))

    @property
    def total(self) -> int:
        """Number of skipped items, all reasons together."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line naming every reason, its count and a few examples."""
        if not self.total:
            return f"{self.where}: nothing skipped"
        parts = [
            f"{count} {reason} (e.g. {', '.join(self._examples[reason])})"
            for reason, count in self.counts.items()
        ]
        return f"{self.where}: skipped {self.total} item(s): " + "; ".join(parts)

    def log(self, log: logging.Logger = logger) -> None:
        """Log the summary as a warning when anything was skipped."""
        if self.total:
            log.warning(self.summary())


class AudioChecker:
    """Reads audio headers (no decoding) and turns them into durations.

    Arguments
    ---------
    skips : SkipCounter
        Where skipped files are counted.
    sample_rate : int or None
        Expected sample rate; a file at another rate raises :class:`BadAudioError`
        (resampling must be explicit). ``None`` accepts any rate.
    on_bad_audio : str
        ``"skip"`` counts unreadable or empty files in ``skips`` and returns ``None``;
        ``"error"`` raises :class:`BadAudioError`.

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> tmp = getfixture("tmp_path")
    >>> sf.write(tmp / "ok.wav", np.zeros(800, dtype="float32"), 16000)
    >>> sf.write(tmp / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    >>> checker = AudioChecker(SkipCounter("demo"), sample_rate=16000)
    >>> checker.duration(tmp / "ok.wav")
    0.05
    >>> checker.duration(tmp / "empty.wav") is None
    True
    >>> checker.skips.counts
    {'empty audio': 1}
    """

    def __init__(self, skips: SkipCounter, *, sample_rate: int | None = 16000, on_bad_audio="skip"):
        if on_bad_audio not in BAD_AUDIO_POLICIES:
            raise ValueError(
                f"on_bad_audio must be one of {BAD_AUDIO_POLICIES}, got {on_bad_audio!r}"
            )
        self.skips = skips
        self.sample_rate = sample_rate
        self.on_bad_audio = on_bad_audio

    def _bad(self, reason: str, path) -> None:
        if self.on_bad_audio == "error":
            raise BadAudioError(f"{self.skips.where}: {reason}: {path}")
        self.skips.skip(reason, path)

    def info(self, path) -> sf._SoundFileInfo | None:
        """The soundfile header of ``path``, or ``None`` when it was skipped."""
        if not os.path.isfile(path):
            self._bad("missing audio file", path)
            return None
        if os.path.getsize(path) == 0:
            self._bad("empty audio", path)
            return None
        try:
            info = sf.info(os.fspath(path))
        except (RuntimeError, sf.LibsndfileError):
            self._bad("unreadable audio", path)
            return None
        if info.frames <= 0 or info.samplerate <= 0:
            self._bad("empty audio", path)
            return None
        if self.sample_rate is not None and info.samplerate != self.sample_rate:
            raise BadAudioError(
                f"{self.skips.where}: {path} has sample rate {info.samplerate} Hz, "
                f"expected {self.sample_rate} Hz (resample the corpus first)"
            )
        return info

    def duration(self, path) -> float | None:
        """Duration in seconds from the file header, or ``None`` when it was skipped."""
        info = self.info(path)
        if info is None:
            return None
        return round(info.frames / info.samplerate, 6)
