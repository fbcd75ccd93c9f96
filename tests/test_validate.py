"""validate_manifests: every way a manifest can be bad, on tiny fixtures (no decoding)."""

import csv
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_ext.data.checks import BadAudioError
from speechbrain_ext.data.validate import validate_manifests


def wav(folder: Path, name: str, *, seconds=0.1, sample_rate=16000, channels=1) -> Path:
    path = folder / name
    sf.write(path, np.zeros((int(seconds * sample_rate), channels), dtype="float32"), sample_rate)
    return path


def manifest(path: Path, rows, columns=("ID", "duration", "wav", "spk_id")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@pytest.fixture
def good(tmp_path):
    """train / valid manifests whose rows are all fine: (folder, manifests)."""
    audio = [wav(tmp_path, f"u{i}.wav", seconds=0.1 * (i + 1)) for i in range(4)]
    train = manifest(
        tmp_path / "train.csv",
        [[f"u{i}", f"{0.1 * (i + 1):.1f}", audio[i], "s1"] for i in range(3)],
    )
    valid = manifest(tmp_path / "valid.csv", [["u3", "0.4", audio[3], "s2"]])
    return tmp_path, {"train": train, "valid": valid}


def test_good_manifests_are_returned_unchanged(good, caplog):
    folder, manifests = good
    with caplog.at_level(logging.INFO, logger="speechbrain_ext.data.validate"):
        result, report = validate_manifests(manifests, output_folder=folder / "out")
    assert result == manifests
    assert not (folder / "out").exists()
    assert report["train"]["rows"] == report["train"]["kept"] == 3
    assert report["train"]["dropped"] == {}
    assert report["train"]["hours"] == pytest.approx(0.6 / 3600)
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("validate")]
    assert len(lines) == 2 and lines[0].startswith("train (") and "kept 3" in lines[0]


def test_bad_durations_and_filters_are_dropped_counted_and_written(good, caplog):
    folder, manifests = good
    audio = folder / "u0.wav"
    rows = [["a", "nan", audio, "s"], ["b", "-1", audio, "s"], ["c", "0", audio, "s"],
            ["d", "inf", audio, "s"], ["e", "abc", audio, "s"], ["f", "0.1", audio, "s"],
            ["g", "20", audio, "s"], ["h", "0.01", audio, "s"]]  # fmt: skip
    manifests["train"] = manifest(folder / "train.csv", rows)
    with caplog.at_level(logging.INFO, logger="speechbrain_ext.data.validate"):
        result, report = validate_manifests(
            manifests, min_duration=0.05, max_duration=10, output_folder=folder / "out"
        )
    assert report["train"]["dropped"] == {
        "invalid duration": 5, "longer than 10 s": 1, "shorter than 0.05 s": 1
    }  # fmt: skip
    assert report["train"]["kept"] == 1 and report["valid"]["dropped"] == {}
    assert result["train"] == folder / "out" / "train.validated.csv"
    assert result["valid"] == manifests["valid"]  # nothing dropped: the original
    with open(result["train"]) as handle:
        kept = list(csv.DictReader(handle))
    assert [row["ID"] for row in kept] == ["f"] and list(kept[0]) == [
        "ID", "duration", "wav", "spk_id"
    ]  # fmt: skip
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train")]
    assert "5 invalid duration (e.g. row 1: 'nan')" in line and "train.validated.csv" in line
    with pytest.raises(ValueError, match="give output_folder"):
        validate_manifests(manifests)  # rows to drop and nowhere to write the cleaned CSV


def test_missing_column_names_the_file_and_column(good):
    folder, manifests = good
    manifests["valid"] = manifest(
        folder / "valid.csv", [["u3", folder / "u3.wav"]], columns=("ID", "wav")
    )
    with pytest.raises(ValueError, match=r"valid\.csv.*no column\(s\) \['duration'\]"):
        validate_manifests(manifests)
    with pytest.raises(ValueError, match=r"no column\(s\) \['wrd'\]"):
        validate_manifests({"train": manifests["train"]}, required_columns=("ID", "wav", "wrd"))
    with pytest.raises(FileNotFoundError, match="no_such.csv"):
        validate_manifests({"test": folder / "no_such.csv"})


def test_missing_audio_names_the_file_and_row(good):
    folder, manifests = good
    rows = [["u0", "0.1", folder / "u0.wav", "s"], ["gone", "0.1", folder / "gone.wav", "s"]]
    manifests["train"] = manifest(folder / "train.csv", rows)
    message = re.escape(f"{manifests['train']} row 2: audio file not found: {folder}/gone.wav")
    with pytest.raises(FileNotFoundError, match=message):
        validate_manifests(manifests)
    result, _ = validate_manifests(manifests, check_audio=False)  # headers not read
    assert result == manifests


def test_stereo_and_wrong_rate_are_rejected(good):
    folder, manifests = good
    stereo = wav(folder, "stereo.wav", channels=2)
    manifests["train"] = manifest(folder / "train.csv", [["st", "0.1", stereo, "s"]])
    with pytest.raises(BadAudioError, match=r"row 1: .*stereo\.wav has 2 channels, mono expected"):
        validate_manifests(manifests)
    slow = wav(folder, "slow.wav", sample_rate=8000)
    manifests["train"] = manifest(folder / "train.csv", [["sl", "0.1", slow, "s"]])
    with pytest.raises(BadAudioError, match="sample rate 8000 Hz, expected 16000 Hz"):
        validate_manifests(manifests)
    validate_manifests(
        {"train": manifests["train"]}, sample_rate=8000
    )  # when 8 kHz is what the recipe wants
    (folder / "empty.wav").write_bytes(b"")
    manifests["train"] = manifest(folder / "train.csv", [["em", "0.1", folder / "empty.wav", "s"]])
    with pytest.raises(BadAudioError, match="empty audio"):
        validate_manifests(manifests)


def test_duplicate_ids_within_and_across_splits(good):
    folder, manifests = good
    audio = folder / "u0.wav"
    manifests["test"] = manifest(folder / "test.csv", [["u1", "0.1", audio, "s"]])
    message = (
        rf"1 ID\(s\) in more than one split: u1 \(train: {re.escape(str(manifests['train']))}, "
        rf"test: {re.escape(str(manifests['test']))}\)"
    )
    with pytest.raises(ValueError, match=message):
        validate_manifests(manifests)
    manifests["test"] = manifest(
        folder / "test.csv", [["t", "0.1", audio, "s"], ["t", "0.2", audio, "s"]]
    )
    with pytest.raises(ValueError, match=r"test\.csv: 1 duplicate ID\(s\): t"):
        validate_manifests(manifests)


def test_data_root_replacement_and_malformed_rows(tmp_path):
    wav(tmp_path, "a.wav")
    path = manifest(tmp_path / "train.csv", [["a", "0.1", "$data_root/a.wav", "s"]])
    result, _ = validate_manifests({"train": path}, replacements={"data_root": tmp_path})
    assert result == {"train": path}
    with pytest.raises(FileNotFoundError, match=r"\$data_root/a\.wav"):
        validate_manifests({"train": path})
    path.write_text("ID,duration,wav\na,0.1\n")
    with pytest.raises(ValueError, match="row 1: no value for column"):
        validate_manifests({"train": path}, check_audio=False)
    path.write_text("ID,duration,wav\n")
    with pytest.raises(ValueError, match="has no rows"):
        validate_manifests({"train": path})
