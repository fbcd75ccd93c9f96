"""QUESST 2014 → query-by-example manifests (queries, documents, ground truth).

Expected layout (``quesst14Database.tgz`` unpacked; ``data_folder`` is ``quesst14Database`` or its
parent)::

    <data_folder>/Audio/quesst14_<nnnnn>.wav                  # the search collection
    <data_folder>/{dev,eval}_queries/quesst14_<split>_<nnnn>.wav
    <data_folder>/scoring/groundtruth_quesst14_<split>/quesst14_<split>.rttm
    <data_folder>/scoring/language_key_{utterances,dev,eval}.lst   # "<path> <language>"

The RTTM's ``LEXEME <doc_id> <channel> <start> <dur> <query_id> ...`` lines mark where a query
occurs in a document; every (query, document) pair is written to ``ground_truth.csv`` with label
1 for such an occurrence and 0 otherwise (the scorer needs the negatives too). The audio is 8 kHz;
with ``resample=True`` (default) every file is converted once to 16 kHz wav under
``<save_folder>/wav16k/`` and the manifests point there.

Outputs in ``save_folder``, for one query ``split`` (``dev`` or ``eval``): ``queries.csv``,
``docs.csv`` (common columns plus ``wrd``, empty: QUESST has no transcripts) and
``ground_truth.csv`` (``query_id,doc_id,label``). ``spk_id`` holds the language when the language
keys are present (QUESST has no speaker labels), else ``unknown``. ``languages`` restricts
queries and documents to some languages (s3prl's current SUPERB code keeps ``nnenglish`` only).
"""

import csv
import logging
import os
import re
from pathlib import Path

from speechbrain_ext.data.checks import (
    AudioChecker,
    SkipCounter,
    require_file,
    require_folder,
)
from speechbrain_ext.data.manifest import convert_audio, outputs_exist, write_manifest

logger = logging.getLogger(__name__)

_LEXEME = re.compile(r"^LEXEME\s+(\S+)\s+\S+\s+\S+\s+\S+\s+(\S+)")


def parse_quesst_rttm(path) -> set[tuple[str, str]]:
    r"""(query_id, doc_id) pairs with an occurrence in a QUESST ground-truth RTTM.

    Example
    -------
    >>> rttm = getfixture("tmp_path") / "gt.rttm"
    >>> _ = rttm.write_text("LEXEME quesst14_00007 1 1.20 0.40 quesst14_dev_0001 lex <NA> <NA>\n")
    >>> parse_quesst_rttm(rttm)
    {('quesst14_dev_0001', 'quesst14_00007')}
    """
    pairs = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = _LEXEME.match(line)
            if match:
                pairs.add((match.group(2), match.group(1)))
    return pairs


def _languages(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    keys = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 2:
                keys[Path(fields[0]).stem] = fields[1]
    return keys


def _root(data_folder) -> Path:
    data_folder = require_folder(data_folder, what="QUESST data_folder")
    nested = data_folder / "quesst14Database"
    return nested if nested.is_dir() else data_folder


def prepare_quesst(
    data_folder,
    save_folder,
    *,
    split: str = "eval",
    languages=None,
    resample: bool = True,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
) -> dict[str, Path]:
    """Write ``queries.csv``, ``docs.csv`` and ``ground_truth.csv`` for one query split.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root (layout in the module docstring) and output folder.
    split : str
        ``"dev"`` or ``"eval"`` queries (SUPERB: dev to choose the layer, eval to report).
    languages : sequence of str, optional
        Keep only these languages (needs the language-key lists); ``None`` keeps all.
    resample : bool
        Convert the 8 kHz audio to 16 kHz wav in ``<save_folder>/wav16k``; with ``False`` the
        files must already be 16 kHz.
    skip_prep, on_bad_audio
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        ``queries``, ``docs``, ``ground_truth`` → path.
    """
    if split not in ("dev", "eval"):
        raise ValueError(f"split must be 'dev' or 'eval', got {split!r}")
    save_folder = Path(save_folder)
    outputs = {n: save_folder / f"{n}.csv" for n in ("queries", "docs", "ground_truth")}
    if skip_prep or outputs_exist(outputs.values(), what="QUESST"):
        return outputs

    root = _root(data_folder)
    scoring = require_folder(root / "scoring", what="QUESST scoring folder")
    rttm = require_file(
        scoring / f"groundtruth_quesst14_{split}" / f"quesst14_{split}.rttm",
        what=f"QUESST {split} ground truth",
    )
    doc_langs = _languages(scoring / "language_key_utterances.lst")
    query_langs = _languages(scoring / f"language_key_{split}.lst")
    if languages is not None and not (doc_langs and query_langs):
        raise FileNotFoundError(
            f"QUESST: languages={list(languages)} needs {scoring}/language_key_utterances.lst "
            f"and language_key_{split}.lst"
        )

    def collect(folder: Path, langs: dict, kind: str) -> list[dict]:
        checker = AudioChecker(
            SkipCounter(f"quesst/{kind}"),
            sample_rate=None if resample else 16000,
            on_bad_audio=on_bad_audio,
        )
        rows = []
        for wav in sorted(require_folder(folder, what=f"QUESST {kind} audio").glob("*.wav")):
            language = langs.get(wav.stem, "unknown")
            if languages is not None and language not in languages:
                continue
            if checker.info(wav) is None:
                continue
            target = wav
            if resample:
                target = save_folder / "wav16k" / kind / wav.name
                try:
                    duration = convert_audio(wav, target)
                except RuntimeError:
                    checker.skips.skip("undecodable audio", wav)
                    continue
            else:
                duration = checker.duration(wav)
            rows.append(
                {
                    "ID": wav.stem,
                    "duration": duration,
                    "wav": str(target.resolve()),
                    "spk_id": language,
                    "wrd": "",
                }
            )
        checker.skips.log(logger)
        return rows

    queries = collect(root / f"{split}_queries", query_langs, "queries")
    docs = collect(root / "Audio", doc_langs, "docs")
    write_manifest(outputs["queries"], queries, extra_columns=["wrd"])
    write_manifest(outputs["docs"], docs, extra_columns=["wrd"])

    positives = parse_quesst_rttm(rttm)
    query_ids = sorted(row["ID"] for row in queries)
    doc_ids = sorted(row["ID"] for row in docs)
    known = set(query_ids), set(doc_ids)
    unmatched = [p for p in positives if p[0] not in known[0] or p[1] not in known[1]]
    if unmatched:
        logger.warning(
            "quesst/%s: %d ground-truth occurrence(s) name a query or document that is not "
            "prepared (filtered or skipped), e.g. %s",
            split,
            len(unmatched),
            sorted(unmatched)[:3],
        )
    tmp = outputs["ground_truth"].with_name("ground_truth.csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["query_id", "doc_id", "label"])
        for query in query_ids:
            for doc in doc_ids:
                writer.writerow([query, doc, int((query, doc) in positives)])
    os.replace(tmp, outputs["ground_truth"])
    return outputs
