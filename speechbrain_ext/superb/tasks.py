"""The ten SUPERB tasks: where their manifests come from, what they predict, how they are scored.

Each task is a :class:`~speechbrain_ext.downstream.task.Task` of suite ``"superb"``, run by the
downstream engine (:func:`speechbrain_ext.downstream.run_task`) on a frozen encoder's learned
softmax-weighted layer sum, with its probe yaml
``speechbrain_ext/downstream/configs/superb/<task>/<probe>.yaml``. Every task runs on the
built-in corpus by default, or on the real corpus when a ``data_folder`` is given, through that
corpus' preparer (below). Where a SUPERB task is an MP3S one (ASR, ASV, ER), its yaml is a
variant of the MP3S yaml and it runs by the same kind and protocol.

=======  ===============  ============  ==============  ============================  =========
task     built-in         label         kind            probe                         metric
=======  ===============  ============  ==============  ============================  =========
``PR``   ``librispeech``  ``phn``       ctc (phonemes)  linear CTC                    PER ↓
``ASR``  ``librispeech``  ``wrd``       ctc (chars)     2-layer BiLSTM CTC            WER ↓
``KS``   ``ks``           ``label``     classification  mean-pool linear, 12 classes  acc ↑
``QbE``  ``qbe``          (ground tr.)  qbe             DTW, best dev layer           MTWV ↑
``SID``  ``sid``          ``spk_id``    classification  mean-pool linear              acc ↑
``ASV``  ``asv``          ``spk_id``    verification    x-vector, AM-softmax          EER ↓
``SD``   ``sd``           ``rttm``      diarization     LSTM, PIT                     DER ↓
``ER``   ``er``           ``emo``       classification  mean-pool linear, 5 folds     acc ↑
``IC``   ``ic``           ``intent``    classification  mean-pool linear              acc ↑
``SF``   ``sf``           ``slot_wrd``  slot_filling    BiLSTM CTC, chars + tags      F1 ↑
=======  ===============  ============  ==============  ============================  =========

Beside the metric: the CER for ASR, the MAP for QbE, the slot-value CER for SF. ER's protocol is
``"folds"``: leave-one-session-out over the five sessions (``folds: all``), the mean accuracy.
The ``diarization`` kind is registered by :mod:`speechbrain_ext.downstream.diarization`.

Example
-------
>>> [task.name for task in TASKS]
['PR', 'ASR', 'KS', 'QbE', 'SID', 'ASV', 'SD', 'ER', 'IC', 'SF']
>>> get_task("SF").kind, get_task("SF").metric, get_task("SF").secondary
('slot_filling', 'slot_type_f1', 'slot_value_cer')
>>> get_task("QbE").splits, get_task("QbE").tables
(('queries', 'docs'), ('ground_truth',))
"""

import csv
import logging
from pathlib import Path

from speechbrain_ext.downstream.task import SPLITS, Task, register_task
from speechbrain_ext.downstream.task import get_task as _get_task
from speechbrain_ext.mp3s.tasks import _prepare_iemocap, _prepare_librispeech, _prepare_voxceleb1

logger = logging.getLogger(__name__)
SUITE = "superb"


def list_tasks() -> list[str]:
    """Task names in the benchmark's order."""
    return [task.name for task in TASKS]


def get_task(name: str) -> Task:
    """The SUPERB :class:`Task` called ``name`` (``KeyError`` lists the valid names)."""
    return _get_task(name, suite=SUITE)


# ------------------------------------------------------------------ real-corpus preparation


def read_lexicon(path) -> dict[str, str]:
    r"""A pronunciation lexicon, ``WORD PH1 PH2 ...`` per line (s3prl's
    ``librispeech-lexicon.txt`` layout), as word → space-separated phonemes (the first
    pronunciation of a word).

    Example
    -------
    >>> path = getfixture("tmp_path") / "lexicon.txt"
    >>> _ = path.write_text("HELLO HH AH0 L OW1\nHELLO HH EH0 L OW1\nWORLD\tW ER1 L D\n")
    >>> read_lexicon(path)
    {'HELLO': 'HH AH0 L OW1', 'WORLD': 'W ER1 L D'}
    """
    lexicon = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            word, *phonemes = line.split()
            if phonemes:
                lexicon.setdefault(word.upper(), " ".join(phonemes))
    return lexicon


def _prepare_librispeech_phonemes(data_folder, save_folder, *, lexicon=None, **options):
    """LibriSpeech (train-clean-100, dev-clean, test-clean) with a ``phn`` column from a
    pronunciation ``lexicon`` (``prepare_options: {lexicon: /path/to/librispeech-lexicon.txt}``);
    utterances with a word the lexicon lacks are left out and counted.
    """
    from speechbrain_ext.data.manifest import read_manifest, write_manifest

    if lexicon is None:
        raise ValueError(
            "PR on the real LibriSpeech needs a pronunciation lexicon: "
            "--override PR:prepare_options={lexicon: /path/to/librispeech-lexicon.txt}"
        )
    pronunciations = read_lexicon(lexicon)
    paths = _prepare_librispeech(data_folder, Path(save_folder) / "words", **options)
    outputs = {}
    for split, path in paths.items():
        rows, skipped = [], 0
        for row in read_manifest(path):
            words = row["wrd"].split()
            if not words or any(word not in pronunciations for word in words):
                skipped += 1
                continue
            rows.append(row | {"phn": " ".join(pronunciations[word] for word in words)})
        if skipped:
            logger.warning("PR %s: %d utterance(s) with words outside the lexicon", split, skipped)
        outputs[split] = write_manifest(
            Path(save_folder) / f"{split}.csv", rows, extra_columns=["wrd", "phn"]
        )
    return outputs


def _prepare_speech_commands(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.speech_commands import prepare_speech_commands

    return prepare_speech_commands(data_folder, save_folder, **options)


def _prepare_quesst(data_folder, save_folder, **options):
    """QUESST 2014's dev and eval queries in one ``queries.csv`` (column ``split``: ``dev``,
    ``test``), the documents, and one ``ground_truth.csv``: the layer is chosen on the dev
    queries and the eval queries are scored, as in SUPERB.
    """
    from speechbrain_ext.data.manifest import (
        COMMON_COLUMNS,
        read_manifest,
        read_table,
        write_manifest,
    )
    from speechbrain_ext.data.prepare.quesst import prepare_quesst

    save_folder = Path(save_folder)
    parts = {
        part: prepare_quesst(data_folder, save_folder / split, split=split, **options)
        for part, split in (("dev", "dev"), ("test", "eval"))
    }
    queries = [
        row | {"split": part}
        for part, paths in parts.items()
        for row in read_manifest(paths["queries"])
    ]
    columns = [c for c in read_table(parts["dev"]["queries"])[0] if c not in COMMON_COLUMNS]
    outputs = {
        "queries": write_manifest(
            save_folder / "queries.csv", queries, extra_columns=[*columns, "split"]
        ),
        "docs": parts["test"]["docs"],
        "ground_truth": save_folder / "ground_truth.csv",
    }
    with open(outputs["ground_truth"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["query_id", "doc_id", "label"])
        for paths in parts.values():
            for row in read_table(paths["ground_truth"]):
                writer.writerow([row["query_id"], row["doc_id"], row["label"]])
    return outputs


def _prepare_voxceleb1_sid(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.voxceleb1 import prepare_voxceleb1

    out = prepare_voxceleb1(data_folder, save_folder, tasks=("sid",), **options)
    return {key: out[f"sid/{key}"] for key in SPLITS}


def _prepare_librimix(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.librimix import prepare_librimix

    return prepare_librimix(data_folder, save_folder, **options)


def _prepare_fluent_speech_commands(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.fluent_speech_commands import (
        prepare_fluent_speech_commands,
    )

    return prepare_fluent_speech_commands(data_folder, save_folder, **options)


def _prepare_snips(data_folder, save_folder, **options):
    from speechbrain_ext.data.prepare.snips import prepare_snips

    return prepare_snips(data_folder, save_folder, **options)


# ------------------------------------------------------------------------------ the tasks

TASKS = (
    Task("superb", "PR", "ctc", "librispeech", "phn", "PER", False, ("linear_ctc",),
         _prepare_librispeech_phonemes, secondary=None),
    Task("superb", "ASR", "ctc", "librispeech", "wrd", "WER", False, ("bilstm_ctc",),
         _prepare_librispeech),
    Task("superb", "KS", "classification", "ks", "label", "accuracy", True,
         ("meanpool_linear",), _prepare_speech_commands),
    Task("superb", "QbE", "qbe", "qbe", "ground_truth", "MTWV", True, ("dtw",), _prepare_quesst,
         splits=("queries", "docs"), tables=("ground_truth",), secondary="MAP"),
    Task("superb", "SID", "classification", "sid", "spk_id", "accuracy", True,
         ("meanpool_linear",), _prepare_voxceleb1_sid),
    Task("superb", "ASV", "verification", "asv", "spk_id", "EER", False, ("xvector",),
         _prepare_voxceleb1, tables=("trials",)),
    Task("superb", "SD", "diarization", "sd", "rttm", "DER", False, ("lstm_pit",),
         _prepare_librimix),
    Task("superb", "ER", "classification", "er", "emo", "accuracy", True, ("meanpool_linear",),
         _prepare_iemocap, protocol="folds"),
    Task("superb", "IC", "classification", "ic", "intent", "accuracy", True,
         ("meanpool_linear",), _prepare_fluent_speech_commands),
    Task("superb", "SF", "slot_filling", "sf", "slot_wrd", "slot_type_f1", True, ("bilstm_ctc",),
         _prepare_snips, secondary="slot_value_cer"),
)  # fmt: skip
for _task in TASKS:
    register_task(_task)
