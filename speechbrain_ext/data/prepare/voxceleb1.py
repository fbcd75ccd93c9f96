"""VoxCeleb1 → speaker identification (``sid``) and verification (``asv``) manifests.

Expected layout (the two official archives unpacked side by side or merged)::

    <data_folder>/wav/<id1xxxx>/<youtube_id>/<nnnnn>.wav          # merged dev + test
      or <data_folder>/vox1_dev_wav/wav/...  and  <data_folder>/vox1_test_wav/wav/...
    <data_folder>/iden_split.txt     # "1|2|3 id10001/1zcIwhmdeo4/00001.wav" (train/dev/test)
    <data_folder>/veri_test2.txt # "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav"

(the two lists may also sit in ``<data_folder>/meta/``). Utterance IDs are
``<speaker>--<youtube_id>--<nnnnn>`` (SpeechBrain's convention; YouTube IDs hold ``-``).

Outputs, under ``save_folder``:

- ``sid/{train,dev,test}.csv``: the official identification split (all 1,251 speakers).
- ``asv/train.csv``, ``asv/dev.csv``: every utterance of the speakers absent from the trial
  list, ``dev_percent`` % of them (chosen by a hash of the ID, so deterministic) held out.
- ``asv/test.csv``: every utterance named in the trial list; ``asv/trials.csv``:
  ``label,enrol_id,test_id``.
"""

import logging
import zlib
from pathlib import Path

from speechbrain_ext.data.checks import (
    AudioChecker,
    SkipCounter,
    require_file,
    require_folder,
)
from speechbrain_ext.data.manifest import outputs_exist, write_manifest, write_table

logger = logging.getLogger(__name__)

_AUDIO_ROOTS = ("wav", "vox1_dev_wav/wav", "vox1_test_wav/wav", "vox1_dev_wav", "vox1_test_wav")
_SID_SPLITS = {"1": "train", "2": "dev", "3": "test"}


def voxceleb_id(rel_path: str) -> str:
    """``id10270/x6uYqmx31kE/00001.wav`` → ``id10270--x6uYqmx31kE--00001``.

    Example
    -------
    >>> voxceleb_id("id10270/x6u-Yqmx31kE/00001.wav")
    'id10270--x6u-Yqmx31kE--00001'
    """
    parts = rel_path.strip().removesuffix(".wav").split("/")
    if len(parts) != 3:
        raise ValueError(f"expected <speaker>/<youtube_id>/<nnnnn>.wav, got {rel_path!r}")
    return "--".join(parts)


def _find_list(data_folder: Path, name: str) -> Path:
    for candidate in (data_folder / name, data_folder / "meta" / name):
        if candidate.is_file():
            return candidate
    return require_file(data_folder / name, what=f"VoxCeleb1 list {name!r}")


def _index_audio(data_folder: Path) -> dict[str, Path]:
    """Relative ``spk/yt/nnnnn.wav`` → absolute path, over every audio root present."""
    index: dict[str, Path] = {}
    roots = [data_folder / r for r in _AUDIO_ROOTS if (data_folder / r).is_dir()]
    if not roots:
        raise FileNotFoundError(
            f"VoxCeleb1: no audio folder under {data_folder} (looked for "
            + ", ".join(_AUDIO_ROOTS)
            + ")"
        )
    for root in roots:
        for path in root.glob("id*/*/*.wav"):
            index.setdefault(path.relative_to(root).as_posix(), path.resolve())
    return index


def _row(rel: str, index, checker: AudioChecker) -> dict | None:
    if rel not in index:
        checker.skips.skip("listed file without audio", rel)
        return None
    duration = checker.duration(index[rel])
    if duration is None:
        return None
    return {
        "ID": voxceleb_id(rel),
        "duration": duration,
        "wav": str(index[rel]),
        "spk_id": rel.split("/")[0],
    }


def prepare_voxceleb1(
    data_folder,
    save_folder,
    *,
    tasks=("sid", "asv"),
    verification_file: str = "veri_test2.txt",
    split_file: str = "iden_split.txt",
    dev_percent: float = 2.0,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
    sample_rate: int = 16000,
) -> dict[str, Path]:
    """Write the VoxCeleb1 ``sid`` and/or ``asv`` manifests (layout in the module docstring).

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root and output root (``sid/`` and ``asv/`` are created in it).
    tasks : sequence of str
        ``"sid"`` and/or ``"asv"``.
    verification_file, split_file : str
        Names of the trial list (``veri_test2.txt`` is the cleaned VoxCeleb1-O list) and of
        the identification split list.
    dev_percent : float
        Percentage of ASV training utterances held out as ``asv/dev.csv``.
    skip_prep, on_bad_audio, sample_rate
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        ``"sid/train"``, ..., ``"asv/trials"`` → path.
    """
    unknown = set(tasks) - {"sid", "asv"}
    if unknown:
        raise ValueError(f"unknown VoxCeleb1 task(s) {sorted(unknown)}; valid: sid, asv")
    save_folder = Path(save_folder)
    outputs = {}
    if "sid" in tasks:
        outputs.update({f"sid/{s}": save_folder / "sid" / f"{s}.csv" for s in _SID_SPLITS.values()})
    if "asv" in tasks:
        for name in ("train", "dev", "test", "trials"):
            outputs[f"asv/{name}"] = save_folder / "asv" / f"{name}.csv"
    if skip_prep or outputs_exist(outputs.values(), what="VoxCeleb1"):
        return outputs

    data_folder = require_folder(data_folder, what="VoxCeleb1 data_folder")
    index = _index_audio(data_folder)

    if "sid" in tasks:
        checker = AudioChecker(
            SkipCounter("voxceleb1/sid"), sample_rate=sample_rate, on_bad_audio=on_bad_audio
        )
        rows = {split: [] for split in _SID_SPLITS.values()}
        with open(_find_list(data_folder, split_file), encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) != 2 or fields[0] not in _SID_SPLITS:
                    raise ValueError(f"{split_file} line {number}: expected '1|2|3 path': {line!r}")
                row = _row(fields[1], index, checker)
                if row is not None:
                    rows[_SID_SPLITS[fields[0]]].append(row)
        checker.skips.log(logger)
        for split, split_rows in rows.items():
            write_manifest(outputs[f"sid/{split}"], split_rows)

    if "asv" in tasks:
        checker = AudioChecker(
            SkipCounter("voxceleb1/asv"), sample_rate=sample_rate, on_bad_audio=on_bad_audio
        )
        trials, test_files = [], {}
        with open(_find_list(data_folder, verification_file), encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) != 3 or fields[0] not in ("0", "1"):
                    raise ValueError(
                        f"{verification_file} line {number}: expected 'label path1 path2': {line!r}"
                    )
                trials.append(fields)
                test_files.update(dict.fromkeys(fields[1:]))
        test_rows = {}
        for rel in test_files:
            row = _row(rel, index, checker)
            if row is not None:
                test_rows[row["ID"]] = row
        kept_trials = []
        for label, enrol, test in trials:
            enrol_id, test_id = voxceleb_id(enrol), voxceleb_id(test)
            if enrol_id in test_rows and test_id in test_rows:
                kept_trials.append({"label": label, "enrol_id": enrol_id, "test_id": test_id})
            else:
                checker.skips.skip("trial with a skipped file", f"{enrol} {test}")
        test_speakers = {rel.split("/")[0] for rel in test_files}
        train_rows, dev_rows = [], []
        for rel in sorted(index):
            if rel.split("/")[0] in test_speakers:
                continue
            row = _row(rel, index, checker)
            if row is None:
                continue
            held_out = zlib.crc32(row["ID"].encode()) % 10000 < dev_percent * 100
            (dev_rows if held_out else train_rows).append(row)
        checker.skips.log(logger)
        write_manifest(outputs["asv/train"], train_rows)
        write_manifest(outputs["asv/dev"], dev_rows)
        write_manifest(outputs["asv/test"], test_rows.values())
        if not kept_trials:
            raise ValueError(f"VoxCeleb1: no usable trial in {verification_file}")
        write_table(outputs["asv/trials"], kept_trials, ["label", "enrol_id", "test_id"])
    return outputs
