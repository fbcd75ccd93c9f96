"""LibriMix (Libri2Mix / Libri3Mix) → speaker diarization manifests with one RTTM per mixture.

Expected layout (as the LibriMix generation scripts write it)::

    <data_folder>/Libri2Mix/wav16k/<mode>/<split>/<mixture>/<mix_id>.wav
    <data_folder>/Libri2Mix/wav16k/<mode>/<split>/s1/<mix_id>.wav  (s2/, s3/ ...)

with ``<mode>`` ``min`` or ``max``, ``<split>`` ``train-100``, ``train-360``, ``dev``, ``test`` and
``<mixture>`` ``mix_both``, ``mix_clean`` or ``mix_single``; ``<mix_id>`` joins the LibriSpeech
utterance IDs of the sources, ``<spk>-<chapter>-<utt>_<spk>-<chapter>-<utt>``. ``data_folder`` may
also be the ``Libri2Mix`` folder itself.

Reference speech activity. SUPERB derives its RTTMs from LibriSpeech word alignments, which
LibriMix does not ship. Here each source's activity is derived from its own clean signal
(``s1``, ``s2``...): frame energy (``frame_seconds`` windows) above ``threshold_db`` relative to
the source's loudest frame is speech; pauses shorter than ``min_pause`` are bridged and speech
shorter than ``min_speech`` is dropped. This is an energy-based stand-in for the forced
alignments, so DER numbers are comparable between our models but not to published SUPERB
numbers.

Outputs ``<save_folder>/{train,dev,test}.csv`` with ``rttm`` (path of
``<save_folder>/rttm/<split>/<mix_id>.rttm``) and ``num_spk`` (sources with any speech);
``spk_id`` is the sources' speakers joined by ``_``.
"""

import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from speechbrain_ext.data.checks import AudioChecker, SkipCounter, require_folder
from speechbrain_ext.data.manifest import outputs_exist, write_manifest

logger = logging.getLogger(__name__)

COLUMNS = ["rttm", "num_spk"]


def speech_segments(
    signal,
    sample_rate: int,
    *,
    frame_seconds: float = 0.02,
    threshold_db: float = -40.0,
    min_pause: float = 0.2,
    min_speech: float = 0.05,
) -> list[tuple[float, float]]:
    """(start, end) seconds of the active parts of a clean single-speaker signal.

    Example
    -------
    >>> sr = 16000
    >>> x = np.zeros(sr)  # 1 s: silence, 0.3 s of tone, silence
    >>> x[4000:8800] = np.sin(np.arange(4800) * 0.3)
    >>> speech_segments(x, sr)
    [(0.24, 0.56)]
    """
    signal = np.asarray(signal, dtype=np.float64)
    hop = max(1, int(round(frame_seconds * sample_rate)))
    frames = len(signal) // hop
    if frames == 0:
        return []
    energy = (signal[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    if energy.max() <= 0:
        return []
    level = 10 * np.log10(np.maximum(energy, 1e-20) / energy.max())
    active = level > threshold_db
    segments, start = [], None
    for index, flag in enumerate([*active, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            segments.append([start * frame_seconds, index * frame_seconds])
            start = None
    merged = []
    for seg in segments:
        if merged and seg[0] - merged[-1][1] < min_pause:
            merged[-1][1] = seg[1]
        else:
            merged.append(seg)
    return [(round(s, 3), round(e, 3)) for s, e in merged if e - s >= min_speech]


def write_rttm(path, mix_id: str, segments_by_speaker: dict[str, list]) -> Path:
    """Write one ``SPEAKER`` line per segment, sorted by start time; returns the path.

    Example
    -------
    >>> path = write_rttm(getfixture("tmp_path") / "m.rttm", "m", {"84": [(0.5, 1.25)]})
    >>> print(path.read_text(), end="")
    SPEAKER m 1 0.500 0.750 <NA> <NA> 84 <NA> <NA>
    """
    lines = sorted(
        (start, end, speaker)
        for speaker, segments in segments_by_speaker.items()
        for start, end in segments
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for start, end, speaker in lines:
            handle.write(
                f"SPEAKER {mix_id} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>\n"
            )
    return path


def _root(data_folder, num_speakers: int) -> Path:
    data_folder = require_folder(data_folder, what="LibriMix data_folder")
    nested = data_folder / f"Libri{num_speakers}Mix"
    return nested if nested.is_dir() else data_folder


def prepare_librimix(
    data_folder,
    save_folder,
    *,
    num_speakers: int = 2,
    sample_rate: int = 16000,
    mode: str = "min",
    mixture: str = "mix_both",
    splits=None,
    frame_seconds: float = 0.02,
    threshold_db: float = -40.0,
    min_pause: float = 0.2,
    min_speech: float = 0.05,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
) -> dict[str, Path]:
    """Write ``train.csv``, ``dev.csv``, ``test.csv`` and the RTTM files.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Corpus root (layout in the module docstring) and output folder.
    num_speakers : int
        2 for Libri2Mix (SUPERB SD), 3 for Libri3Mix.
    sample_rate : int
        Picks ``wav16k`` or ``wav8k``; also the expected rate of every file.
    mode, mixture : str
        ``min``/``max`` and ``mix_both``/``mix_clean``/``mix_single``.
    splits : dict, optional
        Manifest name → LibriMix split folder; default
        ``{"train": "train-100", "dev": "dev", "test": "test"}``.
    frame_seconds, threshold_db, min_pause, min_speech
        Speech activity settings, see :func:`speech_segments`.
    skip_prep, on_bad_audio
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        Manifest name → path.
    """
    splits = dict(splits or {"train": "train-100", "dev": "dev", "test": "test"})
    save_folder = Path(save_folder)
    outputs = {name: save_folder / f"{name}.csv" for name in splits}
    if skip_prep or outputs_exist(outputs.values(), what="LibriMix"):
        return outputs

    root = _root(data_folder, num_speakers)
    rate_dir = require_folder(
        root / f"wav{sample_rate // 1000}k" / mode, what=f"LibriMix {sample_rate} Hz {mode!r}"
    )
    for name, folder in splits.items():
        split_dir = require_folder(rate_dir / folder, what=f"LibriMix split {folder!r}")
        mix_dir = require_folder(split_dir / mixture, what=f"LibriMix {folder} {mixture!r}")
        source_dirs = [
            require_folder(split_dir / f"s{k}", what=f"LibriMix {folder} source s{k}")
            for k in range(1, num_speakers + 1)
        ]
        checker = AudioChecker(
            SkipCounter(f"librimix/{folder}"), sample_rate=sample_rate, on_bad_audio=on_bad_audio
        )
        rows = []
        for mix in sorted(mix_dir.glob("*.wav")):
            speakers = [utt.split("-")[0] for utt in mix.stem.split("_")]
            if len(speakers) != num_speakers:
                checker.skips.skip(f"name without {num_speakers} utterance IDs", mix)
                continue
            duration = checker.duration(mix)
            if duration is None:
                continue
            segments, usable = {}, True
            for k, (speaker, source_dir) in enumerate(zip(speakers, source_dirs), 1):
                source = source_dir / mix.name
                if checker.info(source) is None:
                    usable = False
                    break
                signal, rate = sf.read(source, dtype="float32", always_2d=True)
                found = speech_segments(
                    signal.mean(axis=1),
                    rate,
                    frame_seconds=frame_seconds,
                    threshold_db=threshold_db,
                    min_pause=min_pause,
                    min_speech=min_speech,
                )
                if found:
                    # Two sources may share a speaker (rare); keep them apart in the RTTM.
                    label = speaker if speaker not in segments else f"{speaker}_s{k}"
                    segments[label] = found
            if not usable:
                continue
            if not segments:
                checker.skips.skip("mixture without detected speech", mix)
                continue
            rttm = write_rttm(save_folder / "rttm" / name / f"{mix.stem}.rttm", mix.stem, segments)
            rows.append(
                {
                    "ID": mix.stem,
                    "duration": duration,
                    "wav": str(mix.resolve()),
                    "spk_id": "_".join(speakers),
                    "rttm": str(rttm.resolve()),
                    "num_spk": len(segments),
                }
            )
        checker.skips.log(logger)
        write_manifest(outputs[name], rows, extra_columns=COLUMNS)
    return outputs
