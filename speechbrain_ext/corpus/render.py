"""Turn a planned :class:`~speechbrain_ext.corpus.tasks.Job` into a 16 kHz audio file.

eSpeak NG speaks at 22.05 kHz; audio is resampled to 16 kHz, padded with silence, put
through random recording conditions (:mod:`speechbrain_ext.corpus.augment`) and written as
16-bit FLAC. Every random choice comes from the job's own seed, so a clip is the same
whatever process renders it and in whatever order.

Example
-------
>>> import numpy as np
>>> wav = np.zeros(16000, dtype="float32"); wav[4000:8000] = 0.5
>>> speech_segments(wav)
[(0.25, 0.5)]
"""

import random
import zlib
from pathlib import Path

import numpy as np
import torch
from speechbrain.dataio import audio_io

from speechbrain_ext.corpus import augment as A
from speechbrain_ext.corpus import text as T
from speechbrain_ext.corpus.espeak import get_espeak
from speechbrain_ext.corpus.manifests import write_rttm
from speechbrain_ext.corpus.speakers import (
    ENGLISH_ACCENTS,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    Prosody,
)
from speechbrain_ext.corpus.tasks import PAD_RANGE, Job, Utterance

SAMPLE_RATE = A.SAMPLE_RATE
KS_SECONDS = 1.0
FLOOR_SNR_DB = 50.0  # a faint noise floor under every clip (no digital silence)


def speak(utterance: Utterance, *, aligned: bool = False):
    """Synthesize ``utterance`` and resample it to 16 kHz; float32, shape (samples,).

    With ``aligned``, also its phone alignment: ``[(start_s, end_s, phone)]`` in seconds.
    """
    engine = get_espeak()
    p = utterance.prosody
    synthesize = engine.synthesize_aligned if aligned else engine.synthesize
    out = synthesize(
        utterance.text,
        voice=p.voice,
        rate=p.rate,
        pitch=p.pitch,
        pitch_range=p.pitch_range,
        volume=p.volume,
        seed=zlib.crc32(f"{utterance.spk_id}:{utterance.text}".encode()),
    )
    wav, segments = out if aligned else (out, None)
    wav = torch.from_numpy(wav.astype(np.float32) / 32768.0)
    with torch.no_grad():
        wav = A.resampler(engine.sample_rate, SAMPLE_RATE)(wav).numpy()
    if not aligned:
        return wav
    rate = engine.sample_rate
    return wav, [(start / rate, end / rate, phone) for start, end, phone in segments]


def _babble_sources(rng: random.Random, count: int = 3) -> list:
    variants = MALE_VARIANTS + FEMALE_VARIANTS
    sources = []
    for _ in range(count):
        words = T.short_sentence(rng)
        voice = f"{rng.choice(ENGLISH_ACCENTS)}+{rng.choice(variants)}"
        pro = Prosody(
            voice=voice, rate=rng.randint(150, 200), pitch=rng.randint(20, 80), pitch_range=50
        )
        sources.append(speak(Utterance(tuple(words), pro, "babble")))
    return sources


def _condition(wav, rng, *, level_offset_db=0.0, conditions_out=None, **draw_options):
    conditions = A.draw_conditions(rng, **draw_options)
    if conditions_out is not None:
        conditions_out.append(conditions)
    sources = None
    if conditions.noise == "babble":
        sources = _babble_sources(random.Random(int(rng.integers(2**32))))
    floor = A.coloured_noise(wav.size, exponent=0.0, rng=rng)
    wav = A.mix_at_snr(wav, floor, snr_db=FLOOR_SNR_DB)
    return A.apply_conditions(
        wav, conditions, rng=rng, babble_sources=sources, level_offset_db=level_offset_db
    )


def _pad(wav: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    before, after = (int(rng.uniform(*PAD_RANGE) * SAMPLE_RATE) for _ in range(2))
    padded = np.concatenate([np.zeros(before, np.float32), wav, np.zeros(after, np.float32)])
    return padded, before


def _render_speech(job: Job, rng) -> tuple[np.ndarray, list | None]:
    """The clip, and for jobs with phonemes its phone alignment in the clip's time."""
    aligned = bool(job.options.get("phonemes"))
    spoken = speak(job.utterances[0], aligned=aligned)
    wav, segments = spoken if aligned else (spoken, None)
    wav, before = _pad(wav, rng)
    drawn = []
    level = job.options.get("level_offset_db", 0.0)
    wav = _condition(wav, rng, level_offset_db=level, conditions_out=drawn)
    if segments is not None:  # shift by the leading silence, then stretch like the speed change
        offset, speed = before / SAMPLE_RATE, drawn[0].speed
        segments = [
            (round((start + offset) / speed, 4), round((end + offset) / speed, 4), phone)
            for start, end, phone in segments
        ]
    return wav, segments


def _render_keyword(job: Job, rng) -> np.ndarray:
    size = int(KS_SECONDS * SAMPLE_RATE)
    canvas = np.zeros(size, dtype=np.float32)
    if job.kind == "keyword":
        word = speak(job.utterances[0])
        if rng.random() < 0.3:
            word = A.change_speed(word, float(rng.choice([0.9, 1.1])))
        if word.size > 0.95 * size:  # a slow speaker: speed up to fit the second
            word = A.change_speed(word, word.size / (0.95 * size))[: size - 1]
        start = int(rng.integers(0, size - word.size))
        canvas[start : start + word.size] = word
        return _condition(canvas, rng, p_speed=0.0)
    # _silence_: background noise only, far below the level of speech
    exponent = float(rng.choice(list(A.NOISE_EXPONENTS.values())))
    noise = A.coloured_noise(size, exponent=exponent, rng=rng)
    return A.set_level(noise, float(rng.uniform(-60.0, -45.0)))


def speech_segments(
    wav: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    threshold_db: float = -35.0,
    min_gap: float = 0.3,
    frame: float = 0.01,
) -> list[tuple[float, float]]:
    """Speech regions of a clean source: frames within ``threshold_db`` of its loudest
    frame, with gaps shorter than ``min_gap`` seconds bridged; ``[(start, end)]`` seconds.
    """
    hop = int(frame * sample_rate)
    frames = wav[: wav.size // hop * hop].reshape(-1, hop)
    if frames.size == 0:
        return []
    energy = 10.0 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-20)
    active = np.flatnonzero(energy > energy.max() + threshold_db)
    segments: list[list[int]] = []
    for index in active:
        if segments and index - segments[-1][1] <= min_gap / frame:
            segments[-1][1] = index + 1
        else:
            segments.append([index, index + 1])
    return [(round(float(s * frame), 2), round(float(e * frame), 2)) for s, e in segments]


def _render_mixture(job: Job, rng) -> tuple[np.ndarray, list]:
    first, second = (speak(u) for u in job.utterances)
    start_a = int(rng.uniform(*PAD_RANGE) * SAMPLE_RATE)
    # the second speaker starts while the first is 30 %..100 % through (overlap 0..70 %)
    start_b = start_a + int(first.size * rng.uniform(0.3, 1.0))
    size = max(start_a + first.size, start_b + second.size)
    size += int(rng.uniform(*PAD_RANGE) * SAMPLE_RATE)
    mixture = np.zeros(size, dtype=np.float32)
    segments = []
    gain_db = float(rng.uniform(-3.0, 3.0))  # relative level of the second speaker
    placed = ((first, start_a, 0.0), (second, start_b, gain_db))
    for utt, (wav, start, gain) in zip(job.utterances, placed):
        source = np.zeros(size, dtype=np.float32)
        source[start : start + wav.size] = A.set_level(wav, -25.0 + gain)
        mixture += source
        segments += [(s, e, utt.spk_id) for s, e in speech_segments(source)]
    segments.sort()
    wav = _condition(mixture, rng, p_speed=0.0, p_reverb=0.0, snr_range=(15.0, 30.0))
    return wav, segments


def render_job(job: Job, root: Path) -> tuple[dict, dict]:
    """Make the audio of ``job`` under ``root``; returns (manifest row, extra information).

    The row has the common columns, the job's labels and, for jobs asking for it, ``phn``;
    ``extra`` holds ``segments`` ``[(start, end, spk_id)]`` for mixtures and ``alignment``
    ``[(start, end, phone)]`` (seconds, eSpeak NG's phoneme events) for jobs with phonemes.
    """
    rng = np.random.default_rng(job.seed)
    extra = {}
    if job.kind == "speech":
        wav, alignment = _render_speech(job, rng)
        if alignment is not None:
            extra["alignment"] = alignment
    elif job.kind in ("keyword", "silence"):
        wav = _render_keyword(job, rng)
    elif job.kind == "mixture":
        wav, extra["segments"] = _render_mixture(job, rng)
        write_rttm(Path(root) / job.labels["rttm"], job.uid, extra["segments"])
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")
    path = Path(root) / job.path
    path.parent.mkdir(parents=True, exist_ok=True)
    audio_io.save(str(path), wav, SAMPLE_RATE, subtype="PCM_16")
    row = {
        "ID": job.uid,
        "duration": wav.size / SAMPLE_RATE,
        "wav": str(path),
        "spk_id": job.spk_id,
        **job.labels,
    }
    if "rttm" in row:
        row["rttm"] = str(Path(root) / row["rttm"])
    if job.options.get("phonemes"):
        utt = job.utterances[0]
        row["phn"] = " ".join(get_espeak().phonemize(utt.text, voice=utt.prosody.voice))
    return row, extra
