"""IEMOCAP → 4-class emotion manifests with a session column.

Expected layout (``IEMOCAP_full_release``; ``data_folder`` may be it or its parent)::

    <data_folder>/Session{1..5}/sentences/wav/<dialog>/<utt>.wav
    <data_folder>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt

where an evaluation line reads
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]``.
Classes: ``neu``, ``hap`` (``exc`` merged into it, as SUPERB and MP3S do), ``sad``, ``ang``;
other labels (``fru``, ``sur``, ``xxx``...) are left out and counted in an info log.
``spk_id`` is session + gender of the speaker (``Ses01F``).

Outputs, in ``save_folder``: ``all.csv`` (every kept utterance) and ``train/dev/test.csv`` of the
fold that tests on ``test_session`` (see :func:`leave_one_session_out`).
"""

import logging
import re
import zlib
from pathlib import Path

from speechbrain_ext.data.checks import (
    AudioChecker,
    SkipCounter,
    check_unique_ids,
    require_folder,
)
from speechbrain_ext.data.manifest import outputs_exist, read_manifest, write_manifest

logger = logging.getLogger(__name__)

EMOTIONS = {"neu": "neu", "hap": "hap", "exc": "hap", "sad": "sad", "ang": "ang"}
COLUMNS = ["emo", "session"]
_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\S+)\s+(\w+)\s+\[")


def leave_one_session_out(rows, *, test_session: int, dev_percent: float = 10.0):
    """Split rows into (train, dev, test): ``test`` is ``test_session``; ``dev_percent`` % of
    the other sessions' utterances (chosen by a hash of the ID, so deterministic) is ``dev``.

    Example
    -------
    >>> rows = [{"ID": f"u{i}", "session": str(1 + i % 5)} for i in range(50)]
    >>> train, dev, test = leave_one_session_out(rows, test_session=2, dev_percent=25)
    >>> len(test), len(train) + len(dev)
    (10, 40)
    >>> {r["session"] for r in test}
    {'2'}
    >>> leave_one_session_out(rows, test_session=6)
    Traceback (most recent call last):
    ...
    ValueError: test_session must be 1..5, got 6
    """
    if test_session not in (1, 2, 3, 4, 5):
        raise ValueError(f"test_session must be 1..5, got {test_session}")
    train, dev, test = [], [], []
    for row in rows:
        if int(row["session"]) == test_session:
            test.append(row)
        elif zlib.crc32(row["ID"].encode()) % 10000 < dev_percent * 100:
            dev.append(row)
        else:
            train.append(row)
    return train, dev, test


def _root(data_folder) -> Path:
    data_folder = require_folder(data_folder, what="IEMOCAP data_folder")
    nested = data_folder / "IEMOCAP_full_release"
    return nested if nested.is_dir() else data_folder


def prepare_iemocap(
    data_folder,
    save_folder,
    *,
    sessions=(1, 2, 3, 4, 5),
    test_session: int = 1,
    dev_percent: float = 10.0,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
    sample_rate: int = 16000,
) -> dict[str, Path]:
    """Write ``all.csv`` and the ``train/dev/test.csv`` fold testing on ``test_session``.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root (layout in the module docstring) and output folder.
    sessions : sequence of int
        Sessions to read (all five for the real benchmark).
    test_session, dev_percent
        The fold, see :func:`leave_one_session_out`. Other folds: call it on
        ``read_manifest(outputs["all"])``.
    skip_prep, on_bad_audio, sample_rate
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        ``all``, ``train``, ``dev``, ``test`` → path.
    """
    if test_session not in sessions:
        raise ValueError(f"test_session {test_session} is not among sessions {list(sessions)}")
    save_folder = Path(save_folder)
    outputs = {name: save_folder / f"{name}.csv" for name in ("all", "train", "dev", "test")}
    if skip_prep or outputs_exist(outputs.values(), what="IEMOCAP"):
        return outputs

    root = _root(data_folder)
    checker = AudioChecker(
        SkipCounter("iemocap"), sample_rate=sample_rate, on_bad_audio=on_bad_audio
    )
    other_labels = SkipCounter("iemocap (labels outside the 4 classes)")
    rows, label_ids = [], []
    for session in sessions:
        session_dir = require_folder(root / f"Session{session}", what=f"IEMOCAP session {session}")
        eval_dir = require_folder(
            session_dir / "dialog" / "EmoEvaluation", what=f"IEMOCAP session {session} labels"
        )
        wav_dir = require_folder(
            session_dir / "sentences" / "wav", what=f"IEMOCAP session {session} audio"
        )
        for label_file in sorted(eval_dir.glob("*.txt")):
            dialog = label_file.stem
            with open(label_file, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    match = _LINE.match(line)
                    if match is None:
                        continue
                    utt, emotion = match.groups()
                    label_ids.append(utt)
                    if emotion not in EMOTIONS:
                        other_labels.skip(emotion, utt)
                        continue
                    wav = wav_dir / dialog / f"{utt}.wav"
                    duration = checker.duration(wav)
                    if duration is None:
                        continue
                    rows.append(
                        {
                            "ID": utt,
                            "duration": duration,
                            "wav": str(wav.resolve()),
                            "spk_id": utt[:5] + utt.rsplit("_", 1)[-1][0],
                            "emo": EMOTIONS[emotion],
                            "session": session,
                        }
                    )
    check_unique_ids(label_ids, where="IEMOCAP EmoEvaluation labels")
    checker.skips.log(logger)
    if other_labels.total:
        logger.info(other_labels.summary())
    write_manifest(outputs["all"], rows, extra_columns=COLUMNS)
    rows = read_manifest(outputs["all"])
    folds = leave_one_session_out(rows, test_session=test_session, dev_percent=dev_percent)
    for name, fold in zip(("train", "dev", "test"), folds):
        write_manifest(outputs[name], fold, extra_columns=COLUMNS)
    return outputs
