"""Every corpus preparer on a tiny fixture in the corpus' real layout, plus bad inputs."""

import logging

import corpus_fixtures as cf
import pytest
import soundfile as sf

from speechbrain_ext.data.checks import BadAudioError
from speechbrain_ext.data.manifest import COMMON_COLUMNS, read_manifest, read_table
from speechbrain_ext.data.prepare import (
    PREPARERS,
    leave_one_session_out,
    prepare_commonvoice,
    prepare_fluent_speech_commands,
    prepare_iemocap,
    prepare_librimix,
    prepare_librispeech,
    prepare_quesst,
    prepare_slurp,
    prepare_snips,
    prepare_speech_commands,
    prepare_voxceleb1,
)
from speechbrain_ext.data.prepare.__main__ import main as cli_main


def columns_of(path):
    with open(path) as handle:
        return handle.readline().strip().split(",")


def by_id(path, columns):
    """Rows of a manifest keyed by ID, after checking its header and common columns."""
    assert columns_of(path) == [*COMMON_COLUMNS, *columns]
    rows = read_manifest(path)
    for row in rows:
        assert row["duration"] > 0
        assert row["wav"].startswith("/")
        assert row["spk_id"]
    return {row["ID"]: row for row in rows}


# ---------------------------------------------------------------- LibriSpeech
def test_librispeech(tmp_path):
    expected = cf.make_librispeech(tmp_path / "data")
    out = prepare_librispeech(
        tmp_path / "data",
        tmp_path / "save",
        splits=("dev-clean", "test-clean"),
        merge={"all": ("dev-clean", "test-clean")},
    )
    assert set(out) == {"dev-clean", "test-clean", "all"}
    for split in ("dev-clean", "test-clean"):
        assert columns_of(out[split]) == [*COMMON_COLUMNS, "wrd"]
        rows = read_manifest(out[split])
        assert [r["ID"] for r in rows] == sorted(expected[split])
        for row in rows:
            words, seconds = expected[split][row["ID"]]
            assert row["wrd"] == words
            assert row["duration"] == pytest.approx(seconds, abs=1e-4)
            assert row["spk_id"] == row["ID"].split("-")[0]
            assert row["wav"].endswith(f"{row['ID']}.flac")
            assert (tmp_path / "data").resolve().as_posix() in row["wav"]
    assert len(read_manifest(out["all"])) == sum(len(v) for v in expected.values())


def test_librispeech_accepts_split_parent_and_skips_existing(tmp_path, caplog):
    cf.make_librispeech(tmp_path / "data", nested=False)
    out = prepare_librispeech(tmp_path / "data", tmp_path / "save", splits=("dev-clean",))
    stamp = out["dev-clean"].stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        prepare_librispeech(tmp_path / "data", tmp_path / "save", splits=("dev-clean",))
    assert out["dev-clean"].stat().st_mtime_ns == stamp
    assert "already exist" in caplog.text


def test_librispeech_missing_split(tmp_path):
    cf.make_librispeech(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="'dev-other'"):
        prepare_librispeech(tmp_path / "data", tmp_path / "save", splits=("dev-other",))
    with pytest.raises(FileNotFoundError, match="data_folder"):
        prepare_librispeech(tmp_path / "nowhere", tmp_path / "save")
    with pytest.raises(ValueError, match="unknown LibriSpeech split"):
        prepare_librispeech(tmp_path / "data", tmp_path / "save", splits=("dev",))


def test_librispeech_skips_are_counted(tmp_path, caplog):
    cf.make_librispeech(tmp_path / "data")
    chapter = tmp_path / "data/LibriSpeech/dev-clean/84/121123"
    (chapter / "84-121123-0001.flac").unlink()  # transcript line without audio
    cf.write_audio(chapter / "84-121123-0007.flac", 0.1, fmt="FLAC")  # audio without text
    trans = chapter / "84-121123.trans.txt"
    trans.write_text(trans.read_text() + "84-121123-0008 EMPTY ONE\n84-121123-0009 BROKEN\n")
    cf.write_empty(chapter / "84-121123-0008.flac")
    cf.write_corrupt(chapter / "84-121123-0009.flac")
    with caplog.at_level(logging.WARNING):
        out = prepare_librispeech(tmp_path / "data", tmp_path / "save", splits=("dev-clean",))
    rows = read_manifest(out["dev-clean"])
    assert [r["ID"] for r in rows] == ["174-50561-0000", "84-121123-0000"]
    assert "skipped 4 item(s)" in caplog.text
    for reason in (
        "1 transcript line without audio",
        "1 audio without transcript",
        "1 empty audio",
        "1 unreadable audio",
    ):
        assert reason in caplog.text
    with pytest.raises(BadAudioError, match="empty audio"):
        prepare_librispeech(
            tmp_path / "data", tmp_path / "strict", splits=("dev-clean",), on_bad_audio="error"
        )


def test_librispeech_wrong_rate_and_duplicates(tmp_path):
    cf.make_librispeech(tmp_path / "data")
    chapter = tmp_path / "data/LibriSpeech/dev-clean/84/121123"
    cf.write_audio(chapter / "84-121123-0000.flac", 0.1, sample_rate=8000, fmt="FLAC")
    with pytest.raises(BadAudioError, match="sample rate 8000 Hz, expected 16000"):
        prepare_librispeech(tmp_path / "data", tmp_path / "save", splits=("dev-clean",))
    cf.write_audio(chapter / "84-121123-0000.flac", 0.1, fmt="FLAC")
    copy = tmp_path / "data/LibriSpeech/dev-clean/84/999/84-121123-0000.flac"
    cf.write_audio(copy, 0.1, fmt="FLAC")
    with pytest.raises(ValueError, match="duplicate ID.*84-121123-0000"):
        prepare_librispeech(tmp_path / "data", tmp_path / "save", splits=("dev-clean",))


# ---------------------------------------------------------------- registry and CLI
def test_registry_lists_every_corpus():
    assert PREPARERS.names() == sorted(
        [
            "librispeech",
            "voxceleb1",
            "slurp",
            "iemocap",
            "commonvoice",
            "speech_commands",
            "fluent_speech_commands",
            "snips",
            "librimix",
            "quesst",
        ]
    )


def test_cli(tmp_path, capsys):
    cf.make_librispeech(tmp_path / "data")
    argv = ["librispeech", str(tmp_path / "data"), str(tmp_path / "save")]
    assert cli_main([*argv, "--option", "splits=['test-clean']"]) == 0
    assert "test-clean.csv" in capsys.readouterr().out
    rows = read_table(tmp_path / "save/test-clean.csv")
    assert rows[0]["wrd"] == "HE HOPED THERE WOULD BE STEW"
    with pytest.raises(SystemExit):
        cli_main([*argv, "--option", "no-equals-sign"])
    assert "expected key=value" in capsys.readouterr().err


# ---------------------------------------------------------------- VoxCeleb1
@pytest.mark.parametrize("split_archives", [True, False])
def test_voxceleb1(tmp_path, split_archives):
    cf.make_voxceleb1(tmp_path / "data", split_archives=split_archives)
    out = prepare_voxceleb1(tmp_path / "data", tmp_path / "save", dev_percent=50)
    sid = {split: by_id(out[f"sid/{split}"], []) for split in ("train", "dev", "test")}
    expected = {1: "train", 2: "dev", 3: "test"}
    for rel, number in cf.VOX_FILES.items():
        utt = rel.removesuffix(".wav").replace("/", "--")
        row = sid[expected[number]][utt]
        assert row["spk_id"] == rel.split("/")[0]
        assert row["wav"].endswith(rel)
    assert sum(len(rows) for rows in sid.values()) == len(cf.VOX_FILES)
    # ASV: test = files of the trials; train + dev = the other speakers' files.
    test = by_id(out["asv/test"], [])
    assert set(test) == {
        "id10270--x6uYqmx31kE--00001",
        "id10270--8jEAjG6SegY--00008",
        "id10300--ize_eiCFEg0--00003",
    }
    train, dev = by_id(out["asv/train"], []), by_id(out["asv/dev"], [])
    assert not set(train) & set(dev)
    assert {r["spk_id"] for r in [*train.values(), *dev.values()]} == {"id10001", "id10002"}
    assert len(train) + len(dev) == 5
    trials = read_table(out["asv/trials"])
    assert trials == [
        {
            "label": "1",
            "enrol_id": "id10270--x6uYqmx31kE--00001",
            "test_id": "id10270--8jEAjG6SegY--00008",
        },
        {
            "label": "0",
            "enrol_id": "id10270--x6uYqmx31kE--00001",
            "test_id": "id10300--ize_eiCFEg0--00003",
        },
    ]


def test_voxceleb1_bad_inputs(tmp_path, caplog):
    root = cf.make_voxceleb1(tmp_path / "data")
    (root / "veri_test2.txt").unlink()
    with pytest.raises(FileNotFoundError, match="veri_test2.txt"):
        prepare_voxceleb1(root, tmp_path / "a", tasks=("asv",))
    with pytest.raises(FileNotFoundError, match="no audio folder"):
        prepare_voxceleb1(tmp_path, tmp_path / "b", tasks=("sid",))
    cf.write_corrupt(root / "vox1_dev_wav/wav/id10001/1zcIwhmdeo4/00001.wav")
    (root / "vox1_dev_wav/wav/id10002/6WO410QOeuo/00001.wav").unlink()
    with caplog.at_level(logging.WARNING):
        out = prepare_voxceleb1(root, tmp_path / "c", tasks=("sid",))
    assert "1 listed file without audio" in caplog.text
    assert "1 unreadable audio" in caplog.text
    assert "id10270--x6uYqmx31kE--00001" in by_id(out["sid/train"], [])
    assert len(by_id(out["sid/train"], [])) == 1


# ---------------------------------------------------------------- SLURP
def test_slurp(tmp_path):
    cf.make_slurp(tmp_path / "data")
    out = prepare_slurp(tmp_path / "data", tmp_path / "save")
    columns = ["scenario", "action", "intent", "wrd", "slots"]
    train = by_id(out["train"], columns)
    assert set(train) == {"audio-1-headset", "audio-1", "audio-2", "audio-s1"}
    row = train["audio-1-headset"]
    assert (row["scenario"], row["action"], row["intent"]) == ("alarm", "set", "alarm_set")
    assert row["wrd"] == "WAKE ME UP AT FIVE AM"
    assert row["slots"] == "time=five am"
    assert row["spk_id"] == "U101"
    assert row["wav"].endswith("slurp_real/audio-1-headset.flac")
    assert train["audio-2"]["slots"] == ""
    assert train["audio-s1"]["spk_id"] == "synth"
    assert train["audio-s1"]["wav"].endswith("slurp_synth/audio-s1.flac")
    dev, test = by_id(out["dev"], columns), by_id(out["test"], columns)
    assert dev["audio-3"]["intent"] == "iot_hue_lightoff"
    assert test["audio-4"]["wrd"] == "SET AN ALARM FOR MONDAY"
    assert test["audio-4"]["slots"] == "date=monday"


def test_slurp_without_metadata_or_synth(tmp_path, caplog):
    cf.make_slurp(tmp_path / "data", metadata=False)
    with caplog.at_level(logging.INFO):
        out = prepare_slurp(tmp_path / "data", tmp_path / "save", train_splits=("train",))
    train = by_id(out["train"], ["scenario", "action", "intent", "wrd", "slots"])
    assert set(train) == {"audio-1-headset", "audio-1", "audio-2"}
    assert {r["spk_id"] for r in train.values()} == {"unknown"}
    assert "3 recording(s) without a speaker" in caplog.text
    with pytest.raises(FileNotFoundError, match="SLURP text folder"):
        prepare_slurp(tmp_path, tmp_path / "other")


# ---------------------------------------------------------------- IEMOCAP
def test_iemocap(tmp_path, caplog):
    cf.make_iemocap(tmp_path / "data")
    with caplog.at_level(logging.INFO):
        out = prepare_iemocap(tmp_path / "data", tmp_path / "save", sessions=(1, 2))
    assert "1 fru" in caplog.text
    rows = by_id(out["all"], ["emo", "session"])
    assert {k: (r["emo"], r["session"], r["spk_id"]) for k, r in rows.items()} == {
        "Ses01F_impro01_F000": ("neu", "1", "Ses01F"),
        "Ses01F_impro01_F001": ("hap", "1", "Ses01F"),
        "Ses02M_script01_1_M000": ("ang", "2", "Ses02M"),
        "Ses02M_script01_1_F003": ("sad", "2", "Ses02F"),
    }
    test = by_id(out["test"], ["emo", "session"])
    assert set(test) == {"Ses01F_impro01_F000", "Ses01F_impro01_F001"}
    assert len(read_manifest(out["train"])) + len(read_manifest(out["dev"])) == 2
    train, dev, test = leave_one_session_out(list(rows.values()), test_session=2, dev_percent=0)
    assert ({r["ID"] for r in test}, dev) == (
        {"Ses02M_script01_1_M000", "Ses02M_script01_1_F003"},
        [],
    )


def test_iemocap_missing_session_and_duplicates(tmp_path):
    base = cf.make_iemocap(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="IEMOCAP session 3"):
        prepare_iemocap(tmp_path / "data", tmp_path / "save", sessions=(1, 2, 3))
    label = base / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    label.write_text(label.read_text() + "[9.0 - 9.5]\tSes01F_impro01_F000\tneu\t[1, 2, 3]\n")
    with pytest.raises(ValueError, match="duplicate ID.*Ses01F_impro01_F000"):
        prepare_iemocap(tmp_path / "data", tmp_path / "save", sessions=(1, 2))


# ---------------------------------------------------------------- CommonVoice
def test_commonvoice_mp3_converted_to_16k_wav(tmp_path):
    cf.make_commonvoice(tmp_path / "cy")
    out = prepare_commonvoice(tmp_path / "cy", tmp_path / "save")
    train = by_id(out["train"], ["wrd"])
    assert {k: (r["wrd"], r["spk_id"]) for k, r in train.items()} == {
        "common_voice_cy_1": ("BORE DA FFRIND", "c1"),
        "common_voice_cy_2": ("SUT WYT TI'N", "c2"),
    }
    for row in train.values():
        info = sf.info(row["wav"])
        assert info.samplerate == 16000 and row["wav"].endswith(".wav")
        assert row["duration"] == pytest.approx(0.3, abs=0.03)
    assert by_id(out["test"], ["wrd"])["common_voice_cy_4"]["wrd"] == "HWYL FAWR"


def test_commonvoice_keep_mp3_and_raw_text(tmp_path, caplog):
    root = cf.make_commonvoice(tmp_path / "cy")
    cf.write_empty(root / "clips" / "common_voice_cy_2.mp3")
    with caplog.at_level(logging.WARNING):
        out = prepare_commonvoice(
            root, tmp_path / "save", splits=("train",), convert=False, normalize=False
        )
    train = by_id(out["train"], ["wrd"])
    assert list(train) == ["common_voice_cy_1"]
    assert train["common_voice_cy_1"]["wrd"] == "Bore da, ffrind!"
    assert train["common_voice_cy_1"]["wav"].endswith(".mp3")
    assert "1 empty audio" in caplog.text
    with pytest.raises(FileNotFoundError, match="'validated'"):
        prepare_commonvoice(root, tmp_path / "other", splits=("validated",))


# ---------------------------------------------------------------- Speech Commands
def test_speech_commands(tmp_path):
    cf.make_speech_commands(tmp_path / "data")
    out = prepare_speech_commands(tmp_path / "data", tmp_path / "save", silence_percent=50)
    rows = {split: by_id(out[split], ["label"]) for split in ("train", "dev", "test")}
    labels = {split: sorted(r["label"] for r in v.values()) for split, v in rows.items()}
    assert labels == {
        "train": ["_silence_", "_silence_", "_unknown_", "stop", "stop", "yes"],
        "dev": ["_silence_", "_unknown_", "yes"],
        "test": ["_silence_", "_unknown_", "yes"],
    }
    assert rows["train"]["marvin/0a7c2a8d_nohash_0"]["spk_id"] == "0a7c2a8d"
    silence = [r for v in rows.values() for r in v.values() if r["label"] == "_silence_"]
    assert len({r["wav"] for r in silence}) == 4
    for row in silence:
        assert sf.info(row["wav"]).frames == 16000 and row["duration"] == 1.0
    # Deterministic: a second run elsewhere writes the same manifests.
    again = prepare_speech_commands(tmp_path / "data", tmp_path / "again", silence_percent=50)
    for split in out:
        strip = lambda text: text.replace(str(tmp_path / "again"), str(tmp_path / "save"))  # noqa: E731
        assert strip(again[split].read_text()) == out[split].read_text()


def test_speech_commands_separate_test_set(tmp_path):
    cf.make_speech_commands(tmp_path / "data")
    for label in ("yes", "_silence_", "_unknown_"):
        cf.write_audio(tmp_path / f"testset/{label}/abc_nohash_0.wav", 0.1)
    out = prepare_speech_commands(
        tmp_path / "data", tmp_path / "save", test_folder=tmp_path / "testset", silence_percent=0
    )
    test = by_id(out["test"], ["label"])
    assert {k: r["label"] for k, r in test.items()} == {
        "yes/abc_nohash_0": "yes",
        "_silence_/abc_nohash_0": "_silence_",
        "_unknown_/abc_nohash_0": "_unknown_",
    }


# ---------------------------------------------------------------- Fluent Speech Commands
def test_fluent_speech_commands(tmp_path):
    cf.make_fluent_speech_commands(tmp_path)
    out = prepare_fluent_speech_commands(tmp_path, tmp_path / "save")
    columns = ["action", "object", "location", "intent", "wrd"]
    train = by_id(out["train"], columns)
    assert len(train) == 3
    row = train["00000001-4474-11e9"]
    assert (row["spk_id"], row["action"], row["object"], row["location"]) == (
        "spkA",
        "decrease",
        "heat",
        "kitchen",
    )
    assert row["intent"] == "decrease_heat_kitchen"
    assert row["wrd"] == "TURN DOWN THE HEAT IN THE KITCHEN"
    assert row["wav"].endswith("wavs/speakers/spkA/00000001-4474-11e9.wav")
    assert by_id(out["dev"], columns)["00000003-4474-11e9"]["intent"] == "bring_shoes_none"
    assert by_id(out["test"], columns)["00000004-4474-11e9"]["spk_id"] == "spkD"


def test_fluent_speech_commands_bad_csv(tmp_path):
    base = cf.make_fluent_speech_commands(tmp_path)
    (base / "data/valid_data.csv").write_text(",path,speakerId\n0,a.wav,x\n")
    with pytest.raises(ValueError, match="missing column.*action"):
        prepare_fluent_speech_commands(tmp_path, tmp_path / "save")


# ---------------------------------------------------------------- SNIPS
def test_snips(tmp_path, caplog):
    root = cf.make_snips(tmp_path)
    cf.write_audio(root / "train" / "Brian-snips-train-9.wav", 0.1)  # no annotation
    with caplog.at_level(logging.WARNING):
        out = prepare_snips(root, tmp_path / "save")
    assert "1 audio without annotation" in caplog.text
    columns = ["wrd", "slots", "slot_wrd"]
    train = by_id(out["train"], columns)
    assert set(train) == {"Ivy-snips-train-0", "Joey-snips-train-1"}
    row = train["Joey-snips-train-1"]
    assert row["spk_id"] == "Joey"
    assert row["wrd"] == "BOOK A TABLE IN NEW YORK"
    assert row["slots"] == "city=NEW YORK"
    assert row["slot_wrd"] == "BOOK A TABLE IN B-city NEW YORK E-city"
    dev = by_id(out["dev"], columns)["Aditi-snips-valid-0"]
    assert dev["slots"] == "object=BOOK;rating=FIVE STARS"
    test = by_id(out["test"], columns)["Brian-snips-test-0"]
    assert (test["wrd"], test["slot_wrd"]) == (
        "WILL IT RAIN TOMORROW",
        "WILL IT RAIN B-time TOMORROW E-time",
    )


def test_snips_speaker_filter_and_bad_line(tmp_path, caplog):
    root = cf.make_snips(tmp_path)
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="no utterances"):
        prepare_snips(root, tmp_path / "save", train_speakers=("Salli",))
    assert "2 speaker outside the split's speaker list" in caplog.text
    (root / "all.iob.snips.txt").write_text("Ivy-snips-train-0 BOS a b c EOS\tO O intent\n")
    with pytest.raises(ValueError, match="line 1.*3 words but 2 tags"):
        prepare_snips(root, tmp_path / "save2")


# ---------------------------------------------------------------- LibriMix
def test_librimix(tmp_path):
    mixes = cf.make_librimix(tmp_path)
    out = prepare_librimix(tmp_path, tmp_path / "save")
    for name, split in (("train", "train-100"), ("dev", "dev"), ("test", "test")):
        rows = by_id(out[name], ["rttm", "num_spk"])
        row = rows[mixes[split]]
        spk1, spk2 = (utt.split("-")[0] for utt in mixes[split].split("_"))
        assert row["spk_id"] == f"{spk1}_{spk2}"
        assert row["num_spk"] == "2"
        assert row["duration"] == pytest.approx(0.5)
        lines = [line.split() for line in open(row["rttm"]).read().splitlines()]
        assert [(f[0], f[1], f[7]) for f in lines] == [
            ("SPEAKER", mixes[split], spk1),
            ("SPEAKER", mixes[split], spk2),
        ]
        (s1, d1), (s2, d2) = ((float(f[3]), float(f[4])) for f in lines)
        assert s1 == pytest.approx(0.1, abs=0.02) and s1 + d1 == pytest.approx(0.3, abs=0.02)
        assert s2 == pytest.approx(0.25, abs=0.02) and s2 + d2 == pytest.approx(0.45, abs=0.02)


def test_librimix_missing_source(tmp_path, caplog):
    mixes = cf.make_librimix(tmp_path)
    (tmp_path / f"Libri2Mix/wav16k/min/dev/s2/{mixes['dev']}.wav").unlink()
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="no utterances"):
        prepare_librimix(tmp_path, tmp_path / "save")
    assert "1 missing audio file" in caplog.text
    with pytest.raises(FileNotFoundError, match="'max'"):
        prepare_librimix(tmp_path, tmp_path / "save", mode="max")


# ---------------------------------------------------------------- QUESST
def test_quesst(tmp_path):
    cf.make_quesst(tmp_path)
    out = prepare_quesst(tmp_path, tmp_path / "save", split="dev")
    queries = by_id(out["queries"], ["wrd"])
    docs = by_id(out["docs"], ["wrd"])
    assert set(queries) == {"quesst14_dev_0001", "quesst14_dev_0002"}
    assert set(docs) == {"quesst14_00001", "quesst14_00002", "quesst14_00003"}
    assert docs["quesst14_00002"]["spk_id"] == "basque"
    for row in [*queries.values(), *docs.values()]:
        assert sf.info(row["wav"]).samplerate == 16000
        assert row["wrd"] == ""
    assert queries["quesst14_dev_0001"]["duration"] == pytest.approx(0.15, abs=0.01)
    truth = read_table(out["ground_truth"])
    assert len(truth) == 6
    positives = {(r["query_id"], r["doc_id"]) for r in truth if r["label"] == "1"}
    assert positives == {
        ("quesst14_dev_0001", "quesst14_00001"),
        ("quesst14_dev_0001", "quesst14_00003"),
        ("quesst14_dev_0002", "quesst14_00002"),
    }


def test_quesst_language_filter_and_rate_check(tmp_path):
    cf.make_quesst(tmp_path)
    out = prepare_quesst(tmp_path, tmp_path / "en", split="dev", languages=("nnenglish",))
    truth = read_table(out["ground_truth"])
    assert [(r["query_id"], r["doc_id"], r["label"]) for r in truth] == [
        ("quesst14_dev_0001", "quesst14_00001", "1"),
        ("quesst14_dev_0001", "quesst14_00003", "1"),
    ]
    with pytest.raises(BadAudioError, match="8000 Hz, expected 16000"):
        prepare_quesst(tmp_path, tmp_path / "raw", split="eval", resample=False)
