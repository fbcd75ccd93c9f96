"""The built-in eSpeak NG corpus: files, labels against the audio, determinism, reuse, errors.

One small corpus (minutes=3, two worker processes) is generated per session; the determinism
test generates it once more in-process and compares bytes.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_ext.corpus import ensure_builtin_corpus, generate_corpus, plan_corpus
from speechbrain_ext.corpus import generate as G
from speechbrain_ext.corpus.espeak import (
    Espeak,
    EspeakUnavailableError,
    available_variants,
    get_espeak,
)
from speechbrain_ext.corpus.render import speak
from speechbrain_ext.corpus.speakers import STYLES, plan_speakers, prosody
from speechbrain_ext.corpus.tasks import PROPORTIONS, Utterance

MINUTES, SEED = 3, 7
SPLIT_TASKS = ("librispeech", "ks", "ic", "slurp", "sf", "er", "asv", "sd", "cv_cy", "cv_eu")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def manifest(root, task, split):
    return read_csv(Path(root) / "manifests" / task / f"{split}.csv")


def load(path):
    wav, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return wav


def db(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin") / "corpus"
    return ensure_builtin_corpus(root, minutes=MINUTES, seed=SEED, workers=2, progress=False)


def test_every_manifest_points_to_real_audio_of_that_length(corpus):
    paths = sorted((corpus / "manifests").rglob("*.csv"))
    utterance_manifests = [p for p in paths if p.name not in ("trials.csv", "ground_truth.csv")]
    assert len(utterance_manifests) == 3 * len(SPLIT_TASKS) + 3 + 2  # + sid + qbe
    for path in utterance_manifests:
        rows = read_csv(path)
        assert rows, path
        assert len({r["ID"] for r in rows}) == len(rows)
        for row in rows:
            info = sf.info(row["wav"])
            assert Path(row["wav"]).is_absolute() and info.samplerate == 16000
            duration = float(row["duration"])
            assert duration > 0
            assert abs(duration - info.frames / 16000) < 1e-5, row["ID"]


def test_librispeech_layout_and_prepared_manifests(corpus):
    for split, ls_split in (
        ("train", "train-clean-100"),
        ("dev", "dev-clean"),
        ("test", "test-clean"),
    ):
        rows = manifest(corpus, "librispeech", split)
        assert list(rows[0]) == ["ID", "duration", "wav", "spk_id", "wrd", "phn"]
        for row in rows:
            spk, chapter, _ = row["ID"].split("-")
            wav = Path(row["wav"])
            assert wav == corpus / "LibriSpeech" / ls_split / spk / chapter / f"{row['ID']}.flac"
            transcripts = (wav.parent / f"{spk}-{chapter}.trans.txt").read_text()
            assert f"{row['ID']} {row['wrd']}\n" in transcripts
            assert row["wrd"] == row["wrd"].upper() and row["phn"].split()


def test_speakers_are_disjoint_across_splits(corpus):
    for task in SPLIT_TASKS:
        speakers = {}
        for split in ("train", "dev", "test"):
            speakers[split] = {
                s for r in manifest(corpus, task, split) for s in r["spk_id"].split("_")
            }
        assert not speakers["train"] & speakers["dev"], task
        assert not speakers["train"] & speakers["test"], task
        assert not speakers["dev"] & speakers["test"], task
    # speaker identification splits utterances of the same speakers instead
    sid = {
        split: {r["spk_id"] for r in manifest(corpus, "sid", split)} for split in ("train", "test")
    }
    assert sid["test"] <= sid["train"]


def test_full_speaker_plan():
    plan = plan_speakers(seed=SEED)
    splits = {s: plan.speakers("en", s) for s in ("train", "dev", "test")}
    assert len(splits["train"]) >= 40 and splits["dev"] and splits["test"]
    ids = [spk.spk_id for ss in splits.values() for spk in ss]
    assert len(set(ids)) == len(ids)
    voices = [(spk.voice, spk.variant) for ss in splits.values() for spk in ss]
    assert len(set(voices)) == len(voices)
    variants = set(available_variants())
    for language in ("en", "cy", "eu"):
        for spk in (
            s for split in ("train", "dev", "test") for s in plan.speakers(language, split)
        ):
            assert spk.variant in variants
            assert spk.voice.startswith(language)
    engine = get_espeak()  # every accent and the two low-resource voices load
    for voice in sorted({spk.espeak_voice for spk in plan.all_speakers()}):
        engine.set_voice(voice)
    # a full-size corpus uses all the train speakers for the LibriSpeech part
    jobs = plan_corpus(60, SEED)
    used = {j.spk_id for j in jobs if j.task == "librispeech" and j.split == "train"}
    assert used == {spk.spk_id for spk in splits["train"]}
    minutes = {t: sum(j.est_seconds for j in jobs if j.task == t) / 60 for t in PROPORTIONS}
    assert max(minutes, key=minutes.get) == "librispeech"
    assert 50 < sum(minutes.values()) < 70


def test_same_seed_gives_identical_corpus(corpus, tmp_path):
    again = generate_corpus(
        tmp_path / "again", minutes=MINUTES, seed=SEED, workers=1, progress=False
    )
    files = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        if rel.name == "corpus.json":
            continue
        a, b = (corpus / rel).read_bytes(), (again / rel).read_bytes()
        if rel.suffix == ".csv":
            a = a.replace(str(corpus).encode(), b"ROOT")
            b = b.replace(str(again).encode(), b"ROOT")
        assert a == b, rel
    other = plan_corpus(MINUTES, SEED + 1)
    assert [j.utterances for j in other] != [j.utterances for j in plan_corpus(MINUTES, SEED)]


def test_keyword_spotting_silence_is_much_quieter(corpus):
    rows = [r for s in ("train", "dev", "test") for r in manifest(corpus, "ks", s)]
    labels = {r["label"] for r in rows}
    assert "_silence_" in labels and "_unknown_" in labels
    assert labels <= {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
                      "_silence_", "_unknown_"}  # fmt: skip
    level = {r["ID"]: db(load(r["wav"])) for r in rows}
    silence = [level[r["ID"]] for r in rows if r["label"] == "_silence_"]
    speech = [level[r["ID"]] for r in rows if r["label"] != "_silence_"]
    assert max(silence) < min(speech) - 10
    assert all(abs(float(r["duration"]) - 1.0) < 1e-9 for r in rows)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_diarization_rttm_matches_energy(corpus, split):
    combined = (corpus / "manifests" / "sd" / f"{split}.rttm").read_text()
    for row in manifest(corpus, "sd", split):
        lines = Path(row["rttm"]).read_text().splitlines()
        segments = []
        for line in lines:
            fields = line.split()
            assert fields[0] == "SPEAKER" and fields[1] == row["ID"]
            segments.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
        assert {s for _, _, s in segments} == set(row["spk_id"].split("_"))
        assert int(row["num_spk"]) == 2
        assert "\n".join(lines) in combined
        wav = load(row["wav"])
        inside = np.zeros(wav.size, dtype=bool)
        for start, end, _ in segments:
            inside[int(start * 16000) : int(end * 16000)] = True
        assert inside.any() and (~inside).sum() > 1600
        assert db(wav[inside]) > db(wav[~inside]) + 10, row["ID"]


def test_asr_word_count_follows_duration(corpus):
    rows = [r for s in ("train", "dev", "test") for r in manifest(corpus, "librispeech", s)]
    words = np.array([len(r["wrd"].split()) for r in rows])
    durations = np.array([float(r["duration"]) for r in rows])
    assert len(rows) >= 10
    assert np.corrcoef(words, durations)[0, 1] > 0.6


def _f0(wav, rate=16000):
    """Median pitch (Hz, 40-400) of voiced 64 ms frames, by autocorrelation."""
    hop, size = 320, 1024
    pitches = []
    for start in range(0, wav.size - size, hop):
        frame = wav[start : start + size] - wav[start : start + size].mean()
        if db(frame) < db(wav) - 10:
            continue
        ac = np.correlate(frame, frame, "full")[size - 1 :]
        lo, hi = rate // 400, rate // 40
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


def test_emotion_styles_change_rate_and_pitch(corpus):
    speaker = plan_speakers(seed=SEED).speakers("en", "train")[0]
    words = tuple("the old captain carried a heavy basket across the narrow bridge".split())
    clips = {e: speak(Utterance(words, prosody(speaker, style=e), speaker.spk_id)) for e in STYLES}
    length = {e: clip.size for e, clip in clips.items()}
    assert length["sad"] > length["neu"] > length["hap"] > length["ang"]
    pitch = {e: _f0(clip) for e, clip in clips.items()}
    assert pitch["hap"] > pitch["neu"] > pitch["sad"]
    # labels and sessions in the corpus
    sessions = {"train": {"1", "2", "3"}, "dev": {"4"}, "test": {"5"}}
    for split, allowed in sessions.items():
        rows = manifest(corpus, "er", split)
        assert {r["session"] for r in rows} <= allowed
        assert {r["emo"] for r in rows} <= set(STYLES)
        by_speaker = {}
        for r in rows:
            assert by_speaker.setdefault(r["spk_id"], r["session"]) == r["session"]


def test_intent_slot_and_language_labels(corpus):
    for row in manifest(corpus, "ic", "train"):
        assert row["intent"] == f"{row['action']}_{row['object']}_{row['location']}"
    for row in manifest(corpus, "slurp", "train"):
        assert row["intent"] == f"{row['scenario']}_{row['action']}"
        for pair in filter(None, row["slots"].split(";")):
            assert pair.split("=", 1)[1] in row["wrd"]
    for row in manifest(corpus, "sf", "train"):
        tagged = [w for w in row["slot_wrd"].split() if not w.startswith(("B-", "E-"))]
        assert " ".join(tagged) == row["wrd"]
        assert row["slot_wrd"].count("B-") == len(list(filter(None, row["slots"].split(";"))))
    for language, first in (("cy", 2000), ("eu", 3000)):
        for row in manifest(corpus, f"cv_{language}", "train"):
            assert first < int(row["spk_id"]) < first + 1000 and row["wrd"] == row["wrd"].upper()


def test_verification_trials_and_query_ground_truth(corpus):
    test = {r["ID"]: r["spk_id"] for r in manifest(corpus, "asv", "test")}
    trials = read_csv(corpus / "manifests" / "asv" / "trials.csv")
    assert trials and sum(t["label"] == "1" for t in trials) * 2 == len(trials)
    for t in trials:
        assert t["enrol_id"] in test and t["test_id"] in test and t["enrol_id"] != t["test_id"]
        assert (test[t["enrol_id"]] == test[t["test_id"]]) == (t["label"] == "1")
    queries = {r["ID"]: r["wrd"] for r in read_csv(corpus / "manifests" / "qbe" / "queries.csv")}
    docs = {r["ID"]: r["wrd"].split() for r in read_csv(corpus / "manifests" / "qbe" / "docs.csv")}
    truth = read_csv(corpus / "manifests" / "qbe" / "ground_truth.csv")
    assert len(truth) == len(queries) * len(docs)
    assert any(t["label"] == "1" for t in truth)
    for t in truth:
        assert (queries[t["query_id"]] in docs[t["doc_id"]]) == (t["label"] == "1")


def test_ensure_reuses_relocates_and_redoes_interrupted(corpus, tmp_path, monkeypatch):
    def no_generation(*args, **kwargs):
        raise AssertionError("the corpus was regenerated")

    monkeypatch.setattr(G, "generate_corpus", no_generation)
    assert ensure_builtin_corpus(corpus, minutes=MINUTES, seed=SEED) == corpus
    moved = shutil.copytree(corpus, tmp_path / "moved")
    assert ensure_builtin_corpus(moved, minutes=MINUTES, seed=SEED) == moved
    for path in (moved / "manifests").rglob("*.csv"):
        assert str(corpus) + "/" not in path.read_text()
    assert json.loads((moved / "corpus.json").read_text())["root"] == str(moved)
    row = manifest(moved, "sd", "test")[0]
    assert Path(row["wav"]).is_file() and Path(row["rttm"]).is_file()

    calls = []
    monkeypatch.setattr(G, "generate_corpus", lambda folder, **kw: calls.append(kw) or folder)
    ensure_builtin_corpus(moved, minutes=MINUTES + 1, seed=SEED)  # other settings
    (moved / G.IN_PROGRESS).write_text("pid 1\n")  # a killed generation
    ensure_builtin_corpus(moved, minutes=MINUTES, seed=SEED)
    assert [c["minutes"] for c in calls] == [MINUTES + 1, MINUTES]


def test_bad_input_gives_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="minutes must be > 0"):
        generate_corpus(tmp_path / "a", minutes=0, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        ensure_builtin_corpus(tmp_path / "a", minutes=1, seed=-1)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a built-in corpus"):
        generate_corpus(tmp_path / "data", minutes=1, seed=0)
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"
    with pytest.raises(EspeakUnavailableError, match="cannot load the eSpeak NG library"):
        Espeak(library_path=str(tmp_path / "missing.so"), data_path=str(tmp_path))

    def broken():
        raise EspeakUnavailableError("no library")

    monkeypatch.setattr(G, "get_espeak", broken)
    with pytest.raises(EspeakUnavailableError):
        generate_corpus(tmp_path / "b", minutes=1, seed=0)
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="unknown eSpeak NG voice"):
        get_espeak().set_voice("xx-nowhere")
    with pytest.raises(ValueError, match="variant"):
        get_espeak().set_voice("en+nobody")
    cli = [sys.executable, "-m", "speechbrain_ext.corpus", "--out", str(tmp_path / "data")]
    done = subprocess.run(cli + ["--minutes", "-1"], capture_output=True, text=True)
    assert done.returncode == 2 and "minutes must be > 0" in done.stderr
