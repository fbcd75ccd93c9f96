"""Audio SNIPS (SUPERB slot filling) → slot filling manifests.

Expected layout (the synthesized "Audio SNIPS" corpus SUPERB uses; s3prl's reader expects the
same)::

    <data_folder>/all.iob.snips.txt              # one line per utterance, see below
    <data_folder>/{train,valid,test}/<uid>.wav   # any depth below the split folder

with ``<uid>`` = ``<speaker>-snips-<split>-<index>`` and a line
``<uid> BOS w1 ... wn EOS<TAB>O t1 ... tn <intent>`` (IOB tags ``B-<slot>``/``I-<slot>``/``O``;
the leading ``O`` tags ``BOS``, the intent takes the place of ``EOS``'s tag). Speakers are split
as SUPERB does (``train_speakers``, ``valid_speakers``, ``test_speakers``; the defaults are
s3prl's). Words that are bare punctuation are dropped with their tags, as in s3prl.

Outputs ``<save_folder>/{train,dev,test}.csv`` with ``wrd`` (upper-case words), ``slots``
(``slot=value;slot=value``) and ``slot_wrd``: the words with each slot span wrapped in
``B-<slot>`` ... ``E-<slot>`` tokens, the target format of SUPERB's slot-filling CTC.
"""

import logging
from pathlib import Path

from speechbrain_ext.data.checks import (
    AudioChecker,
    SkipCounter,
    check_unique_ids,
    require_file,
    require_folder,
)
from speechbrain_ext.data.manifest import outputs_exist, write_manifest

logger = logging.getLogger(__name__)

COLUMNS = ["wrd", "slots", "slot_wrd"]
TRAIN_SPEAKERS = ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli")
VALID_SPEAKERS = ("Aditi", "Amy", "Geraint", "Nicole")
TEST_SPEAKERS = ("Brian", "Emma", "Raveena", "Russell")
_PUNCTUATION = set("?!.,;-–…")


def parse_iob_line(line: str) -> tuple[str, list[str], list[str], str]:
    r"""Split an ``all.iob.snips.txt`` line into (uid, words, tags, intent).

    Example
    -------
    >>> parse_iob_line("Ivy-snips-train-3 BOS play jazz now . EOS\tO O B-genre O O PlayMusic")
    ('Ivy-snips-train-3', ['play', 'jazz', 'now'], ['O', 'B-genre', 'O'], 'PlayMusic')
    """
    tokens = line.split()
    if len(tokens) < 4 or tokens[1] != "BOS" or "EOS" not in tokens:
        raise ValueError(f"not an IOB line '<uid> BOS words EOS tags intent': {line!r}")
    uid, eos = tokens[0], tokens.index("EOS")
    words, after = tokens[2:eos], tokens[eos + 1 :]
    if len(after) == len(words) + 2:
        after = after[1:]  # the tag of BOS
    if len(after) != len(words) + 1:
        raise ValueError(f"{uid}: {len(words)} words but {len(after) - 1} tags")
    tags, intent = after[:-1], after[-1]
    kept = [(w, t) for w, t in zip(words, tags) if w not in _PUNCTUATION]
    return uid, [w for w, _ in kept], [t for _, t in kept], intent


def slot_spans(words, tags) -> list[tuple[str, int, int]]:
    """IOB tags → (slot, start, end) spans (end exclusive); a stray ``I-`` opens a span.

    Example
    -------
    >>> slot_spans(["to", "new", "york", "now"], ["O", "B-city", "I-city", "B-time"])
    [('city', 1, 3), ('time', 3, 4)]
    """
    spans = []
    for index, tag in enumerate(tags):
        kind, _, slot = tag.partition("-")
        if kind == "I" and spans and spans[-1][0] == slot and spans[-1][2] == index:
            spans[-1] = (slot, spans[-1][1], index + 1)
        elif kind in ("B", "I"):
            spans.append((slot, index, index + 1))
    return spans


def slot_columns(words, tags) -> dict[str, str]:
    """The ``wrd``, ``slots`` and ``slot_wrd`` values of one utterance.

    Example
    -------
    >>> cols = slot_columns(["play", "jazz", "now"], ["O", "B-genre", "O"])
    >>> cols["slots"], cols["slot_wrd"]
    ('genre=JAZZ', 'PLAY B-genre JAZZ E-genre NOW')
    """
    upper = [w.upper() for w in words]
    spans = slot_spans(upper, tags)
    starts = {start: (slot, end) for slot, start, end in spans}
    out, index = [], 0
    while index < len(upper):
        if index in starts:
            slot, end = starts[index]
            out += [f"B-{slot}", *upper[index:end], f"E-{slot}"]
            index = end
        else:
            out.append(upper[index])
            index += 1
    return {
        "wrd": " ".join(upper),
        "slots": ";".join(f"{slot}={' '.join(upper[s:e])}" for slot, s, e in spans),
        "slot_wrd": " ".join(out),
    }


def prepare_snips(
    data_folder,
    save_folder,
    *,
    train_speakers=TRAIN_SPEAKERS,
    valid_speakers=VALID_SPEAKERS,
    test_speakers=TEST_SPEAKERS,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
    sample_rate: int = 16000,
) -> dict[str, Path]:
    """Write ``train.csv``, ``dev.csv`` (from ``valid/``) and ``test.csv``.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root (layout in the module docstring) and output folder.
    train_speakers, valid_speakers, test_speakers : sequence of str
        Speakers kept in each split (recordings of other speakers are left out, counted).
    skip_prep, on_bad_audio, sample_rate
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        ``train``, ``dev``, ``test`` → path.
    """
    save_folder = Path(save_folder)
    outputs = {split: save_folder / f"{split}.csv" for split in ("train", "dev", "test")}
    if skip_prep or outputs_exist(outputs.values(), what="SNIPS"):
        return outputs

    root = require_folder(data_folder, what="SNIPS data_folder")
    annotations = {}
    uids = []
    with open(require_file(root / "all.iob.snips.txt", what="SNIPS annotations")) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                uid, words, tags, _ = parse_iob_line(line)
            except ValueError as error:
                raise ValueError(f"all.iob.snips.txt line {number}: {error}") from None
            annotations[uid] = (words, tags)
            uids.append(uid)
    check_unique_ids(uids, where="SNIPS all.iob.snips.txt")
    folders = {
        "train": ("train", train_speakers),
        "dev": ("valid", valid_speakers),
        "test": ("test", test_speakers),
    }
    for split, (folder, speakers) in folders.items():
        split_dir = require_folder(root / folder, what=f"SNIPS split {folder!r}")
        checker = AudioChecker(
            SkipCounter(f"snips/{split}"), sample_rate=sample_rate, on_bad_audio=on_bad_audio
        )
        rows = []
        for wav in sorted(split_dir.rglob("*.wav")):
            uid = wav.stem
            speaker = uid.split("-")[0]
            if uid not in annotations:
                checker.skips.skip("audio without annotation", wav)
                continue
            if speaker not in speakers:
                checker.skips.skip("speaker outside the split's speaker list", uid)
                continue
            words, tags = annotations[uid]
            if not words:
                checker.skips.skip("empty transcript", uid)
                continue
            duration = checker.duration(wav)
            if duration is None:
                continue
            rows.append(
                {"ID": uid, "duration": duration, "wav": str(wav.resolve()), "spk_id": speaker}
                | slot_columns(words, tags)
            )
        checker.skips.log(logger)
        write_manifest(outputs[split], rows, extra_columns=COLUMNS)
    return outputs
