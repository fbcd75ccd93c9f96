"""Recording-condition effects: speed, reverberation, additive noise and level.

All functions take and return float32 numpy arrays of shape (samples,) at 16 kHz and draw
randomness only from the ``numpy.random.Generator`` they are given, so a corpus is
reproducible from its seed.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> noise = coloured_noise(16000, exponent=1.0, rng=rng)
>>> round(float(np.sqrt(np.mean(noise**2))), 3)
1.0
>>> speech = np.sin(np.arange(16000) / 5).astype("float32")
>>> noisy = mix_at_snr(speech, noise, snr_db=10.0)
>>> round(snr_db(speech, noisy - speech), 1)
10.0
"""

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
from torchaudio.transforms import Resample

SAMPLE_RATE = 16000


def rms(wav: np.ndarray) -> float:
    """Root mean square of ``wav`` (0 for an empty array)."""
    return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """Signal-to-noise ratio in dB from the two components."""
    return float(20.0 * np.log10(rms(signal) / max(rms(noise), 1e-12)))


def _fft_size(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()  # a power of two >= n: fast FFTs


def coloured_noise(num_samples: int, *, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f^exponent power spectrum (0 white, 1 pink, 2 brown), RMS 1."""
    if exponent == 0.0:
        noise = rng.standard_normal(num_samples)
    else:
        size = _fft_size(num_samples)
        spectrum = np.fft.rfft(rng.standard_normal(size))
        freqs = np.arange(len(spectrum), dtype=np.float64)
        freqs[0] = 1.0
        spectrum /= freqs ** (exponent / 2.0)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=size)[:num_samples]
    return (noise / max(rms(noise), 1e-12)).astype(np.float32)


def babble(sources: list, num_samples: int, *, rng: np.random.Generator) -> np.ndarray:
    """Sum of speech ``sources``, each looped to ``num_samples`` from a random offset, RMS 1."""
    out = np.zeros(num_samples, dtype=np.float64)
    for src in sources:
        if src.size == 0:
            continue
        src = src / max(rms(src), 1e-12)
        reps = int(np.ceil((num_samples + src.size) / src.size))
        start = int(rng.integers(0, src.size))
        out += np.tile(src, reps)[start : start + num_samples]
    return (out / max(rms(out), 1e-12)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, *, snr_db: float) -> np.ndarray:
    """``speech`` plus ``noise`` (same length) scaled to the given SNR."""
    scale = rms(speech) / max(rms(noise), 1e-12) / 10.0 ** (snr_db / 20.0)
    return (speech + scale * noise).astype(np.float32)


@lru_cache(maxsize=16)
def resampler(orig_freq: int, new_freq: int) -> Resample:
    """A cached resampling module (its sinc kernel is computed once)."""
    return Resample(orig_freq, new_freq)


def change_speed(wav: np.ndarray, factor: float) -> np.ndarray:
    """Play ``wav`` ``factor`` times faster by resampling (pitch moves with it).

    Example
    -------
    >>> change_speed(np.zeros(11000, dtype="float32"), 1.1).shape
    (10000,)
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    ratio = Fraction(factor).limit_denominator(20)
    if ratio == 1:
        return wav
    return resampler(ratio.numerator, ratio.denominator)(torch.from_numpy(wav)).numpy()


def synthetic_rir(*, rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE):
    """Impulse response: a direct path then exponentially decaying noise (-60 dB at rt60)."""
    length = max(int(rt60 * sample_rate), 2)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * 10.0 ** (-3.0 * t / rt60)
    delay = int(rng.integers(int(0.002 * sample_rate), int(0.01 * sample_rate)))
    tail[:delay] = 0.0  # a gap before the first reflections
    rir = 0.3 * tail / max(np.abs(tail).max(), 1e-12)
    rir[0] = 1.0
    return rir.astype(np.float32)


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir``, keeping the input length (and its timing)."""
    if wav.size == 0:
        return wav
    size = _fft_size(wav.size + rir.size - 1)
    spectrum = np.fft.rfft(wav, n=size) * np.fft.rfft(rir, n=size)  # numpy: one thread, exact
    return np.fft.irfft(spectrum, n=size)[: wav.size].astype(np.float32)


def set_level(wav: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Scale to an RMS level in dB full scale, then limit peaks to 0.99 (no clipping)."""
    out = wav * (10.0 ** (level_dbfs / 20.0) / max(rms(wav), 1e-12))
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0.99:
        out = out * (0.99 / peak)
    return out.astype(np.float32)


@dataclass(frozen=True)
class Conditions:
    """The recording conditions drawn for one clip (see :func:`draw_conditions`)."""

    speed: float
    rt60: float | None
    noise: str | None  # "white", "pink", "brown", "babble" or None
    snr_db: float
    level_dbfs: float


NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def draw_conditions(
    rng: np.random.Generator,
    *,
    p_speed: float = 0.3,
    p_reverb: float = 0.3,
    p_noise: float = 0.5,
    snr_range: tuple = (5.0, 30.0),
    level_range: tuple = (-32.0, -18.0),
) -> Conditions:
    """Draw speed (0.9 / 1.1), reverberation (rt60 0.2–0.7 s), noise type and SNR, level."""
    speed = float(rng.choice([0.9, 1.1])) if rng.random() < p_speed else 1.0
    rt60 = float(rng.uniform(0.2, 0.7)) if rng.random() < p_reverb else None
    noise = (
        str(rng.choice(["white", "pink", "brown", "babble"])) if rng.random() < p_noise else None
    )
    return Conditions(
        speed=speed,
        rt60=rt60,
        noise=noise,
        snr_db=float(rng.uniform(*snr_range)),
        level_dbfs=float(rng.uniform(*level_range)),
    )


def apply_conditions(
    wav: np.ndarray,
    conditions: Conditions,
    *,
    rng: np.random.Generator,
    babble_sources: list | None = None,
    level_offset_db: float = 0.0,
) -> np.ndarray:
    """Speed → reverberation → noise → level (``level_offset_db`` added to the level).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> wav = np.sin(np.arange(16000) / 5).astype("float32")
    >>> cond = Conditions(speed=1.1, rt60=0.3, noise="pink", snr_db=10.0, level_dbfs=-20.0)
    >>> out = apply_conditions(wav, cond, rng=rng)
    >>> out.shape, round(float(20 * np.log10(rms(out))), 1)
    ((14546,), -20.0)
    """
    wav = change_speed(wav, conditions.speed)
    if conditions.rt60 is not None:
        wav = reverberate(wav, synthetic_rir(rt60=conditions.rt60, rng=rng))
    if conditions.noise is not None:
        if conditions.noise == "babble":
            if not babble_sources:
                raise ValueError("babble noise needs babble_sources")
            noise = babble(babble_sources, wav.size, rng=rng)
        else:
            exponent = NOISE_EXPONENTS[conditions.noise]
            noise = coloured_noise(wav.size, exponent=exponent, rng=rng)
        wav = mix_at_snr(wav, noise, snr_db=conditions.snr_db)
    return set_level(wav, conditions.level_dbfs + level_offset_db)
