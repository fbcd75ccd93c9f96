"""The SUPERB suite: every task through the engine on tiny data, the runner with two encoders,
the aggregate score, and slot-filling tokens."""

import csv
import math
from pathlib import Path

import pytest
import torch
from speechbrain.dataio import audio_io
from test_mp3s import SAMPLE_RATE, _tone, _write_csv, make_tiny_bestrq, write_tiny_manifests

from speechbrain_ext.downstream import KINDS, load_task_hparams, run_task
from speechbrain_ext.downstream.grid import RunResult, Variant
from speechbrain_ext.downstream.tokenizers import SlotTokenizer, build_tokenizer
from speechbrain_ext.superb.aggregate import summarize, superb_scores, task_score
from speechbrain_ext.superb.tasks import TASKS, get_task, list_tasks

PHONEMES = {"HI": "h aɪ", "YO": "j oʊ", "OH": "oʊ"}
SLOT_TEXTS = ["GO TO B-city ROME E-city", "PLAY B-genre JAZZ E-genre", "HI", "GO HOME"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_superb_manifests(root: Path) -> Path:
    """Every SUPERB task's folder in the built-in layout, over the MP3S tests' tones."""
    manifests = write_tiny_manifests(root)
    tones = {s: _rows(manifests / "librispeech" / f"{s}.csv") for s in ("train", "dev", "test")}
    for split, rows in tones.items():
        for row in rows:
            row["phn"] = " ".join(PHONEMES[word] for word in row["wrd"].split())
        _write_csv(manifests / "librispeech" / f"{split}.csv", rows)
        base = [{k: row[k] for k in ("ID", "duration", "wav", "spk_id")} for row in rows]
        _write_csv(
            manifests / "ks" / f"{split}.csv",
            [r | {"label": ("yes", "_silence_", "_unknown_")[i % 3]} for i, r in enumerate(base)],
        )
        _write_csv(manifests / "sid" / f"{split}.csv", base)  # spk_id s0..s2 in every split
        _write_csv(
            manifests / "ic" / f"{split}.csv",
            [r | {"intent": ("on_lights", "off_music")[i % 2]} for i, r in enumerate(base)],
        )
        _write_csv(
            manifests / "sf" / f"{split}.csv",
            [r | {"slot_wrd": SLOT_TEXTS[i % 4]} for i, r in enumerate(base)],
        )
    # ER: five sessions, as SUPERB's leave-one-session-out folds need.
    er = [r for s in ("train", "dev", "test") for r in _rows(manifests / "er" / f"{s}.csv")]
    for index, row in enumerate(er):
        row["session"] = str(index % 5 + 1)
    _write_csv(manifests / "er" / "train.csv", er[:-4])
    _write_csv(manifests / "er" / "dev.csv", er[-4:-2])
    _write_csv(manifests / "er" / "test.csv", er[-2:])
    # QbE: the test queries are documents' tones (ground truth 1 for the same tone).
    base = [{k: row[k] for k in ("ID", "duration", "wav", "spk_id")} for row in tones["train"]]
    queries = [r | {"wrd": ""} for r in base[:4]]
    docs = [r | {"wrd": ""} for r in base[4:]]
    _write_csv(manifests / "qbe" / "queries.csv", queries)
    _write_csv(manifests / "qbe" / "docs.csv", docs)
    truth = [
        {"query_id": q["ID"], "doc_id": d["ID"], "label": int(i % 4 == (j + 4) % 4)}
        for i, q in enumerate(queries)
        for j, d in enumerate(docs)
    ]
    _write_csv(manifests / "qbe" / "ground_truth.csv", truth)
    write_diarization_manifests(manifests / "sd", root / "sd_wav")
    return manifests


def write_diarization_manifests(folder: Path, wav_dir: Path) -> None:
    """``sd/{train,dev,test}.csv`` and ``.rttm``: two tones in turn, overlapping in the middle."""
    wav_dir.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 6), ("dev", 2), ("test", 2)):
        rows, lines = [], []
        for index in range(count):
            utt = f"sd-{split}-{index}"
            a, b = _tone(220 + 40 * index, 0.6, index), _tone(520, 0.6, 100 + index)
            mix = torch.zeros(int(1.0 * SAMPLE_RATE))
            mix[: a.numel()] += a
            mix[-b.numel() :] += b  # speaker B from 0.4 s: 0.2 s of overlap
            wav = wav_dir / f"{utt}.wav"
            audio_io.save(str(wav), mix, SAMPLE_RATE)
            turns = [f"SPEAKER {utt} 1 0.000 0.600 <NA> <NA> A{index} <NA> <NA>",
                     f"SPEAKER {utt} 1 0.400 0.600 <NA> <NA> B{index} <NA> <NA>"]  # fmt: skip
            rttm = wav_dir / f"{utt}.rttm"
            rttm.write_text("\n".join(turns) + "\n")
            lines += turns
            rows.append({
                "ID": utt, "duration": 1.0, "wav": str(wav), "spk_id": f"A{index}_B{index}",
                "rttm": str(rttm), "num_spk": 2,
            })  # fmt: skip
        _write_csv(folder / f"{split}.csv", rows)
        (folder / f"{split}.rttm").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def superb_manifests(tmp_path_factory) -> Path:
    return write_superb_manifests(tmp_path_factory.mktemp("superb_data"))


def test_the_ten_tasks_and_their_yamls():
    assert list_tasks() == ["PR", "ASR", "KS", "QbE", "SID", "ASV", "SD", "ER", "IC", "SF"]
    for task in TASKS:
        if task.kind not in KINDS:  # the diarization kind may not be merged yet
            continue
        hparams = load_task_hparams(task, task.probes[0])
        assert hparams["task"] == task.name and hparams["output_folder"].startswith(
            "results/SUPERB/"
        )
    assert load_task_hparams("superb/ER", "meanpool_linear")["folds"] == "all"
    assert load_task_hparams("superb/ASV", "xvector")["probe_options"]["margin_loss"] == "am"
    assert load_task_hparams("superb/PR", "linear_ctc")["tokenizer"] == "phoneme"


def test_slot_filling_keeps_each_tag_one_token():
    tokenizer = build_tokenizer("slot", SLOT_TEXTS)
    assert isinstance(tokenizer, SlotTokenizer)
    ids = tokenizer.encode("GO TO B-city ROME E-city")
    labels = tokenizer.encoder.decode_ndim(ids)
    assert labels[:2] == ["G", "O"] and "B-city" in labels and "E-city" in labels
    assert len(ids) == len("GO TO ROME") + 2 + 2  # chars and spaces, two tags, two spaces
    assert tokenizer.decode(ids) == "GO TO B-city ROME E-city"
    phonemes = build_tokenizer("phoneme", ["h aɪ", "j oʊ"])
    assert len(phonemes.encode("j oʊ h")) == 3 and phonemes.decode(phonemes.encode("aɪ")) == "aɪ"


def _result(label, task, value, higher=True):
    return RunResult(
        variant=Variant(label, label), task=task, probe="p", metric="m", value=value,
        layer_weights=[1.0], higher_is_better=higher,
    )  # fmt: skip


def test_the_aggregate_against_hand_computed_values():
    references = {"KS": 100.0, "ASR": 0.0, "QbE": 0.1}
    results = [
        _result("fbank", "KS", 50.0), _result("enc", "KS", 75.0),  # 1000 × 25/50 = 500
        _result("fbank", "ASR", 40.0, False), _result("enc", "ASR", 10.0, False),  # 1000 × 30/40
        _result("fbank", "QbE", 0.2), _result("enc", "QbE", 0.3),  # fbank beyond the reference
    ]  # fmt: skip
    aggregate, per_task = superb_scores(results, references=references)
    assert per_task["enc"] == {"KS": 500.0, "ASR": 750.0, "QbE": None}
    assert aggregate == {"fbank": 0.0, "enc": 625.0}
    assert task_score(30.0, fbank=40.0, reference=0.0, higher_is_better=False) == 250.0
    (row,), notes = summarize(results, references=references)
    assert row.values["enc"] == 625.0 and "enc: left out QbE" in notes


SMOKE_OVERRIDES = {"QbE": {}, "ER": {"dev_percent": 30}}


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_runs_on_tiny_data(superb_manifests, tmp_path, name):
    task = get_task(name)
    if task.kind not in KINDS:
        pytest.skip(f"the {task.kind} kind is not registered (its module is not merged yet)")
    overrides = {
        "manifest_root": str(superb_manifests), "output_folder": str(tmp_path / "out"),
        "cache_folder": str(tmp_path / "cache"), "number_of_epochs": 1,
        **SMOKE_OVERRIDES.get(name, {}),
    }  # fmt: skip
    if name == "QbE":
        del overrides["number_of_epochs"]
    results = run_task(task, load_task_hparams(task, task.probes[0], overrides))
    assert results["task"] == name and results["metric"] == task.metric
    assert math.isfinite(results["value"]) and results["value"] >= 0.0
    assert results["layer_weights"] == [1.0]  # fbank: one layer
    if task.secondary and task.secondary != "CER" or name == "ASR":
        assert math.isfinite(results["test_stats"][task.secondary])
    if name == "ER":
        assert len(results["fold_accuracy"]) == 5


def test_the_runner_compares_two_encoders_with_the_aggregate(superb_manifests, tmp_path):
    from speechbrain_ext.superb.runner import main

    first = make_tiny_bestrq(tmp_path / "a" / "tiny")
    second = make_tiny_bestrq(tmp_path / "b" / "tiny")  # same name: deduplicated label
    results = tmp_path / "results"
    argv = [
        "--encoder", str(first), str(second), "--tasks", "KS,QbE",
        "--manifest_root", str(superb_manifests), "--work_folder", str(tmp_path / "work"),
        "--results_folder", str(results), "--override", "number_of_epochs=1", "--jobs", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    table = (results / "tiny.md").read_text()
    assert "| task | probe | metric | tiny | tiny_2 | fbank | random |" in table
    assert "| QbE | dtw | MTWV ↑ (MAP) | " in table
    assert "| **SUPERB score** | | score ↑ | " in table
    assert "| tiny_2 | QbE | dtw | " in table  # the layer weights: the chosen layer, one-hot
    with open(results / "tiny.csv") as handle:
        rows = list(csv.DictReader(handle))
    runs = [row for row in rows if row["status"] == "ok"]
    assert len(runs) == 8 and {row["encoder"] for row in runs} == {
        "tiny", "tiny_2", "fbank", "random"
    }  # fmt: skip
    qbe = next(row for row in runs if row["task"] == "QbE" and row["encoder"] == "tiny")
    weights = [float(w) for w in qbe["layer_weights"].split()]
    assert len(weights) == 3 and sorted(weights) == [0.0, 0.0, 1.0]
    assert qbe["secondary_metric"] == "MAP" and qbe["secondary"]
    summary = [row for row in rows if row["status"] == "summary"]
    assert [row["encoder"] for row in summary] == ["tiny", "tiny_2", "fbank", "random"]
    assert all(row["task"] == "SUPERB score" for row in summary)
