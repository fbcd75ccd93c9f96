"""Manifests of the built-in corpus (schema: ``docs/manifests.md``), RTTM files, the ASV
trial list and the QbE ground truth.

The LibriSpeech-layout part goes through the real preparer,
:func:`speechbrain_ext.data.prepare.librispeech.prepare_librispeech`, so the corpus
exercises the same path as the real data; the phoneme column is added from the synthesis
records.

Example
-------
>>> rttm_lines("mix1", [(0.25, 1.5, "1001"), (1.0, 2.0, "1002")])[0]
'SPEAKER mix1 1 0.250 1.250 <NA> <NA> 1001 <NA> <NA>'
>>> rows = [{"ID": "q1", "wrd": "RIVER"}]
>>> docs = [{"ID": "d1", "wrd": "THE RIVER WAS COLD"}, {"ID": "d2", "wrd": "A HORSE RAN"}]
>>> qbe_ground_truth(rows, docs)
[{'query_id': 'q1', 'doc_id': 'd1', 'label': 1}, {'query_id': 'q1', 'doc_id': 'd2', 'label': 0}]
"""

import json
import random
import shutil
from collections import defaultdict
from pathlib import Path

from speechbrain_ext.data.manifest import TASK_COLUMNS as SCHEMA_COLUMNS
from speechbrain_ext.data.manifest import read_manifest, write_manifest, write_table

SPLITS = ("train", "dev", "test")
# Task columns after ID, duration, wav, spk_id, by manifest folder: the schema's table
# (speechbrain_ext.data.manifest), plus phonemes for the LibriSpeech part and one CommonVoice
# folder per language.
TASK_COLUMNS = {
    **{task: columns for task, columns in SCHEMA_COLUMNS.items() if task != "cv"},
    "librispeech": (*SCHEMA_COLUMNS["librispeech"], "phn"),
    "cv_cy": SCHEMA_COLUMNS["cv"],
    "cv_eu": SCHEMA_COLUMNS["cv"],
}
LIBRISPEECH_SPLITS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}


ALIGNMENTS_FILE = "alignments.json"
"""Phone alignments of a task's utterances, beside its manifests: a JSON object mapping each
utterance ID to ``[[start_s, end_s, phone], ...]`` (eSpeak NG's phoneme events)."""


def rttm_lines(file_id: str, segments) -> list[str]:
    """RTTM ``SPEAKER`` lines for ``segments`` ``[(start, end, speaker)]`` in seconds.

    Example
    -------
    >>> rttm_lines("m", [(0.0, 0.5, "a")])
    ['SPEAKER m 1 0.000 0.500 <NA> <NA> a <NA> <NA>']
    """
    lines = []
    for start, end, speaker in segments:
        if not end > start:
            raise ValueError(f"{file_id}: empty segment ({start}, {end}) of {speaker}")
        lines.append(
            f"SPEAKER {file_id} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>"
        )
    return lines


def write_rttm(path, file_id: str, segments) -> Path:
    """Write the RTTM of one recording; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in rttm_lines(file_id, segments)))
    return path


def asv_trials(rows: list, *, seed: int, max_targets: int = 5) -> list[dict]:
    """Balanced verification trials. Every utterance of a speaker with at least two is an
    enrolment; its target trials are up to ``max_targets`` other utterances of the speaker,
    and as many non-target trials go to random utterances of other speakers.

    Example
    -------
    >>> rows = [{"ID": i, "spk_id": s} for i, s in [("a1", "A"), ("a2", "A"), ("b1", "B")]]
    >>> trials = asv_trials(rows, seed=0)
    >>> sorted(t["label"] for t in trials)
    [0, 0, 1, 1]
    """
    rng = random.Random(f"trials-{seed}")
    by_speaker = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["ID"]):
        by_speaker[row["spk_id"]].append(row["ID"])
    if len(by_speaker) < 2:
        raise ValueError("verification trials need at least two speakers")
    trials = []
    for speaker, ids in sorted(by_speaker.items()):
        others = [i for s, other in sorted(by_speaker.items()) if s != speaker for i in other]
        for enrol in ids:
            same = [i for i in ids if i != enrol]
            count = min(len(same), len(others), max_targets)
            targets, impostors = rng.sample(same, count), rng.sample(others, count)
            trials += [{"label": 1, "enrol_id": enrol, "test_id": t} for t in targets]
            trials += [{"label": 0, "enrol_id": enrol, "test_id": t} for t in impostors]
    return trials


def sid_splits(rows: list) -> dict:
    """Split each speaker's utterances (sorted by ID) into train/dev/test for speaker
    identification: about 10 % each to dev and test for speakers with at least 3.
    """
    by_speaker = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["ID"]):
        by_speaker[row["spk_id"]].append(row)
    out = {split: [] for split in SPLITS}
    for utts in by_speaker.values():
        held = max(1, round(0.1 * len(utts))) if len(utts) >= 3 else 0
        out["test"] += utts[len(utts) - held :]
        out["dev"] += utts[len(utts) - 2 * held : len(utts) - held]
        out["train"] += utts[: len(utts) - 2 * held]
    return out


def qbe_ground_truth(queries: list, docs: list) -> list[dict]:
    """Every (query, document) pair, label 1 when the document's words contain the term."""
    pairs = []
    for query in queries:
        term = query["wrd"].split()
        for doc in docs:
            words = doc["wrd"].split()
            hit = any(words[i : i + len(term)] == term for i in range(len(words)))
            pairs.append({"query_id": query["ID"], "doc_id": doc["ID"], "label": int(hit)})
    return pairs


def _write_librispeech(root: Path, rows_by_split: dict, folder: Path) -> list[Path]:
    from speechbrain_ext.data.prepare.librispeech import prepare_librispeech

    # Transcripts in LibriSpeech's layout: <split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    chapters = defaultdict(list)
    for rows in rows_by_split.values():
        for row in rows:
            chapters[Path(row["wav"]).parent].append(row)
    for chapter_dir, rows in sorted(chapters.items()):
        spk, chapter = chapter_dir.parent.name, chapter_dir.name
        lines = [f"{r['ID']} {r['wrd']}\n" for r in sorted(rows, key=lambda r: r["ID"])]
        (chapter_dir / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    staging = folder / "_prepare_librispeech"
    shutil.rmtree(staging, ignore_errors=True)
    prepared = prepare_librispeech(
        root / "LibriSpeech", staging, splits=tuple(LIBRISPEECH_SPLITS.values())
    )
    written = []
    for split, ls_split in LIBRISPEECH_SPLITS.items():
        phonemes = {row["ID"]: row["phn"] for row in rows_by_split[split]}
        rows = read_manifest(prepared[ls_split])
        if sorted(r["ID"] for r in rows) != sorted(phonemes):
            raise RuntimeError(
                f"prepare_librispeech returned other utterances than were synthesized for "
                f"{ls_split} ({len(rows)} vs {len(phonemes)})"
            )
        for row in rows:
            row["phn"] = phonemes[row["ID"]]
        written.append(
            write_manifest(folder / f"{split}.csv", rows, extra_columns=TASK_COLUMNS["librispeech"])
        )
    shutil.rmtree(staging)
    return written


def write_corpus_manifests(root, results: list, *, seed: int) -> list[Path]:
    """Write every manifest of the corpus from the rendered clips.

    Arguments
    ---------
    root : Path
        The corpus folder; manifests go to ``root/manifests/<task>/``.
    results : list of (Job, row, extra)
        Each planned job with the manifest row and extra information its rendering gave.
    seed : int
        Corpus seed (for the trial list).

    Returns
    -------
    list of Path
        The files written.
    """
    root = Path(root)
    grouped = defaultdict(lambda: defaultdict(list))
    segments = {}
    alignments = defaultdict(dict)
    for job, row, extra in results:
        grouped[job.task][job.split].append(row)
        if "segments" in extra:
            segments[job.uid] = extra["segments"]
        if "alignment" in extra:
            alignments[job.task][job.uid] = [list(segment) for segment in extra["alignment"]]
    out = root / "manifests"
    written = []
    for task, by_id in sorted(alignments.items()):
        path = out / task / ALIGNMENTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(sorted(by_id.items())), ensure_ascii=False) + "\n")
        written.append(path)

    def manifest(task, name, rows, columns=None):
        columns = TASK_COLUMNS[task] if columns is None else columns
        return write_manifest(out / task / f"{name}.csv", rows, extra_columns=columns)

    for task, by_split in sorted(grouped.items()):
        if task == "librispeech":
            written += _write_librispeech(root, by_split, out / "librispeech")
        elif task == "spk":
            for split, rows in sid_splits(by_split["train"]).items():
                written.append(manifest("sid", split, rows))
            for split in SPLITS:
                written.append(manifest("asv", split, by_split[split]))
            trials = asv_trials(by_split["test"], seed=seed)
            columns = ("label", "enrol_id", "test_id")
            written.append(write_table(out / "asv" / "trials.csv", trials, columns))
        elif task == "qbe":
            written.append(manifest("qbe", "queries", by_split["queries"]))
            written.append(manifest("qbe", "docs", by_split["docs"]))
            pairs = qbe_ground_truth(
                sorted(by_split["queries"], key=lambda r: r["ID"]),
                sorted(by_split["docs"], key=lambda r: r["ID"]),
            )
            columns = ("query_id", "doc_id", "label")
            written.append(write_table(out / "qbe" / "ground_truth.csv", pairs, columns))
        else:
            for split in SPLITS:
                written.append(manifest(task, split, by_split[split]))
            if task == "sd":  # one RTTM per split too, for scoring tools
                for split in SPLITS:
                    lines = []
                    for row in sorted(by_split[split], key=lambda r: r["ID"]):
                        lines += rttm_lines(row["ID"], segments[row["ID"]])
                    path = out / "sd" / f"{split}.rttm"
                    path.write_text("".join(line + "\n" for line in lines))
                    written.append(path)
    return written
