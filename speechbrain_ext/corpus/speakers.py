"""Synthetic speakers (voice × variant × pitch × range × rate) and speaking styles.

A speaker is one eSpeak NG language voice (the accent), one voice variant (voice quality:
``m1``..``m8``, ``f1``..``f5``, Klatt variants and a few named ones) and its own base pitch,
pitch range and speaking rate. :func:`plan_speakers` draws disjoint train / dev / test
speakers for English and for the two low-resource languages; no two speakers of a language
share a (voice, variant) pair.

Example
-------
>>> plan = plan_speakers(seed=0)
>>> [len(plan.speakers("en", split)) for split in ("train", "dev", "test")]
[48, 8, 8]
>>> spk = plan.speakers("en", "train")[0]
>>> spk.espeak_voice == f"{spk.voice}+{spk.variant}"
True
>>> p = prosody(spk, style="sad")
>>> p.rate < spk.rate and p.pitch < spk.pitch
True
"""

import random
from dataclasses import dataclass

ENGLISH_ACCENTS = (
    "en",  # British English (default)
    "en-us",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",  # Caribbean
    "en-us-nyc",
    "en-gb-x-gbclan",  # Lancashire
    "en-gb-x-gbcwmd",  # West Midlands
)
MALE_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Alex", "Andy", "Lee", "ed", "grandpa",
    "john", "quincy", "robert", "travis", "klatt", "klatt2", "klatt3",
)  # fmt: skip
FEMALE_VARIANTS = (
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "linda",
    "belinda",
    "steph",
    "Andrea",
    "Annie",
    "aunty",
)
LANGUAGE_VOICES = {"cy": "cy", "eu": "eu"}  # Welsh, Basque
SPLITS = ("train", "dev", "test")
# Speakers per split: English (pretraining, ASR and the SUPERB-like tasks) and each
# low-resource language.
ENGLISH_SPEAKERS = {"train": 48, "dev": 8, "test": 8}
LOW_RESOURCE_SPEAKERS = {"train": 8, "dev": 2, "test": 2}
# First speaker id of each language (LibriSpeech-style integer ids).
ID_BASE = {"en": 1000, "cy": 2000, "eu": 3000}


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    Attributes
    ----------
    spk_id : str
        Integer-like id (``"1003"``), also the LibriSpeech speaker folder name.
    language : str
        ``"en"``, ``"cy"`` or ``"eu"``.
    voice : str
        eSpeak NG language voice (the accent), e.g. ``"en-gb-scotland"``.
    variant : str
        eSpeak NG voice variant, e.g. ``"f2"``.
    gender : str
        ``"m"`` or ``"f"`` (from the variant).
    pitch, pitch_range : int
        eSpeak NG base pitch and pitch range, 0–100.
    rate : int
        Speaking rate in words per minute.
    """

    spk_id: str
    language: str
    voice: str
    variant: str
    gender: str
    pitch: int
    pitch_range: int
    rate: int

    @property
    def espeak_voice(self) -> str:
        """The name given to ``espeak_SetVoiceByName``."""
        return f"{self.voice}+{self.variant}"


@dataclass(frozen=True)
class Style:
    """A speaking style rendered through prosody, relative to the speaker's own.

    Attributes
    ----------
    rate_factor : float
        Multiplies the speaking rate.
    pitch_shift, range_shift : int
        Added to the base pitch and pitch range (0–100 scale).
    volume : int
        eSpeak NG volume (100 normal); also shifts the recording level.
    """

    rate_factor: float
    pitch_shift: int
    range_shift: int
    volume: int


# IEMOCAP-like classes: sad is slow, low and flat; angry fast, loud and wide; happy high and
# lively; neutral the speaker's own prosody.
STYLES = {
    "neu": Style(rate_factor=1.0, pitch_shift=0, range_shift=0, volume=100),
    "hap": Style(rate_factor=1.12, pitch_shift=22, range_shift=35, volume=120),
    "sad": Style(rate_factor=0.72, pitch_shift=-22, range_shift=-35, volume=70),
    "ang": Style(rate_factor=1.3, pitch_shift=8, range_shift=25, volume=170),
}


@dataclass(frozen=True)
class Prosody:
    """Concrete eSpeak NG settings for one utterance."""

    voice: str
    rate: int
    pitch: int
    pitch_range: int
    volume: int = 100


def _clip(value: float, low: int, high: int) -> int:
    return int(min(max(round(value), low), high))


def prosody(speaker: Speaker, *, style: str = "neu", rng: random.Random | None = None) -> Prosody:
    """ESpeak NG settings for ``speaker`` speaking in ``style``.

    With ``rng``, the rate (±4 %) and pitch (±3) vary a little from utterance to utterance.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    s = STYLES[style]
    rate_jitter = rng.uniform(0.96, 1.04) if rng else 1.0
    pitch_jitter = rng.randint(-3, 3) if rng else 0
    return Prosody(
        voice=speaker.espeak_voice,
        rate=_clip(speaker.rate * s.rate_factor * rate_jitter, 80, 450),
        pitch=_clip(speaker.pitch + s.pitch_shift + pitch_jitter, 0, 100),
        pitch_range=_clip(speaker.pitch_range + s.range_shift, 0, 100),
        volume=s.volume,
    )


@dataclass(frozen=True)
class SpeakerPlan:
    """Disjoint speakers per language and split (``plan[language][split]``)."""

    by_language: dict

    def speakers(self, language: str, split: str) -> list[Speaker]:
        """The speakers of ``language`` (``en``, ``cy``, ``eu``) in ``split``."""
        return list(self.by_language[language][split])

    def all_speakers(self) -> list[Speaker]:
        """Every speaker of every language and split."""
        return [s for splits in self.by_language.values() for ss in splits.values() for s in ss]


def _draw(rng: random.Random, language: str, voices, counts: dict) -> dict:
    combos = [(v, m, "m") for v in voices for m in MALE_VARIANTS]
    combos += [(v, f, "f") for v in voices for f in FEMALE_VARIANTS]
    total = sum(counts.values())
    if total > len(combos):
        raise ValueError(f"{total} {language} speakers asked, only {len(combos)} voices exist")
    chosen = rng.sample(combos, total)
    speakers, index = {}, 0
    for split in SPLITS:
        speakers[split] = []
        for _ in range(counts[split]):
            voice, variant, gender = chosen[index]
            speakers[split].append(
                Speaker(
                    spk_id=str(ID_BASE[language] + index + 1),
                    language=language,
                    voice=voice,
                    variant=variant,
                    gender=gender,
                    pitch=rng.randint(30, 70),
                    pitch_range=rng.randint(35, 75),
                    rate=rng.randint(140, 205),
                )
            )
            index += 1
    return speakers


def plan_speakers(
    seed: int,
    *,
    english: dict | None = None,
    low_resource: dict | None = None,
) -> SpeakerPlan:
    """Draw the speakers of the corpus (deterministic for ``seed``).

    Arguments
    ---------
    seed : int
        Random seed.
    english, low_resource : dict, optional
        Speakers per split (``{"train": 48, "dev": 8, "test": 8}`` and
        ``{"train": 8, "dev": 2, "test": 2}`` by default).
    """
    english = dict(english or ENGLISH_SPEAKERS)
    low_resource = dict(low_resource or LOW_RESOURCE_SPEAKERS)
    for counts in (english, low_resource):
        if set(counts) != set(SPLITS) or min(counts.values()) < 1:
            raise ValueError(f"speaker counts need train, dev and test >= 1, got {counts}")
    rng = random.Random(f"speakers-{seed}")
    plan = {"en": _draw(rng, "en", ENGLISH_ACCENTS, english)}
    for language, voice in LANGUAGE_VOICES.items():
        plan[language] = _draw(rng, language, (voice,), low_resource)
    return SpeakerPlan(by_language=plan)
