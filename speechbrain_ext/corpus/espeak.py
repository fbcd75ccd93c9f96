"""A small ctypes driver for the eSpeak NG library shipped by ``espeakng-loader``.

eSpeak NG keeps its state in the process (one voice, one set of parameters), so each process
holds one :class:`Espeak`, obtained with :func:`get_espeak`. Audio is retrieved synchronously
through the synthesis callback (22.05 kHz int16); phoneme transcripts come from
``espeak_TextToPhonemes`` with the same voice, so they describe what is synthesized. The same
callback reports a phoneme event (IPA name and audio sample) at the start of every phoneme it
speaks, which :meth:`Espeak.synthesize_aligned` turns into a phone alignment of the audio.

Example
-------
>>> engine = get_espeak()
>>> engine.sample_rate
22050
>>> wav = engine.synthesize("hello world", voice="en-us", rate=175)
>>> wav.dtype, 0.5 < len(wav) / engine.sample_rate < 2.0
(dtype('int16'), True)
>>> engine.phonemize("hello world", voice="en-us")
['h', 'ə', 'l', 'oʊ', 'w', 'ɜː', 'l', 'd']
>>> same, segments = engine.synthesize_aligned("hello world", voice="en-us", rate=175)
>>> bool((same == wav).all())  # the events do not change the audio
True
>>> [phone for _, _, phone in segments]
['h', 'ə', 'l', 'oʊ', 'w', 'ɜː', 'l', 'd']
>>> all(s < e for s, e, _ in segments), segments[-1][1] <= len(wav)
(True, True)
"""

import _ctypes
import ctypes
import os
import re
from pathlib import Path

import numpy as np

# eSpeak NG constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
_PHONEMES_IPA = 0x02
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_PHONEME_SEPARATOR = "_"
_PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "pitch_range": 4, "word_gap": 7}
# Stress marks are properties of syllables, not phonemes; language-switch markers "(en)".
_STRIP = re.compile(r"[ˈˌ]|\([a-z-]+\)")


class EspeakUnavailableError(RuntimeError):
    """The eSpeak NG library or its voice data cannot be loaded."""


def _paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError as error:
        raise EspeakUnavailableError(
            "the built-in corpus needs the 'espeakng-loader' package (it ships libespeak-ng "
            "and its voice data): pip install espeakng-loader"
        ) from error
    try:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except RuntimeError as error:
        raise EspeakUnavailableError(f"espeakng-loader is broken: {error}") from error


def data_path() -> Path:
    """The ``espeak-ng-data`` folder (voices, dictionaries) shipped by ``espeakng-loader``."""
    return Path(_paths()[1])


def available_variants() -> list[str]:
    """Names of the voice variants (``m1``, ``f3``, ``klatt``...) in the voice data.

    A variant name that does not exist is silently ignored by eSpeak NG, so callers check
    against this list.
    """
    folder = data_path() / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h); ``name`` is the phoneme of a phoneme event."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples from the start of the utterance
        ("user_data", ctypes.c_void_p),
        ("name", ctypes.c_char * 8),  # the id union: a phoneme's name for phoneme events
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class Espeak:
    """One eSpeak NG engine (use :func:`get_espeak`: the library has one state per process).

    eSpeak NG's waveform generator keeps state from one utterance to the next (pitch
    flutter phase, gain control, cycle counters), so the same text would sound slightly
    different depending on what was spoken before. To make audio a function of its
    arguments only, :meth:`synthesize` unloads and reloads the library (a few
    milliseconds) before every utterance. This relies on nothing else in the process
    holding the same library open.

    Arguments
    ---------
    library_path : str, optional
        The shared library; default: the one from ``espeakng-loader``.
    data_path : str, optional
        The ``espeak-ng-data`` folder; default: the one from ``espeakng-loader``.
    """

    def __init__(self, *, library_path: str | None = None, data_path: str | None = None):
        default_lib, default_data = (None, None)
        if library_path is None or data_path is None:
            default_lib, default_data = _paths()
        self.library_path = library_path or default_lib
        self.data_path = data_path or default_data
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []  # (sample, phoneme; "" for a pause or the end)
        self._callback = _CALLBACK(self._collect)  # kept alive as long as the engine
        self._lib = None
        self._load()
        self._variants = set(available_variants()) if self.data_path == default_data else None

    def _load(self) -> None:
        try:
            lib = ctypes.CDLL(self.library_path, mode=os.RTLD_LOCAL)
        except OSError as error:
            raise EspeakUnavailableError(
                f"cannot load the eSpeak NG library {self.library_path}: {error}"
            ) from error
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size in bytes
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique identifier
            ctypes.c_void_p,  # user data
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), options)
        if rate <= 0:
            raise EspeakUnavailableError(
                f"espeak_Initialize failed (returned {rate}) with the voice data in "
                f"{self.data_path}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self.sample_rate = rate

    def reload(self) -> None:
        """Unload and reload the library: a fresh synthesizer state."""
        if self._lib is not None:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
            self._lib = None
        self._load()

    def _collect(self, samples, count, events) -> int:
        if samples and count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        index = 0
        while events and events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                name = _STRIP.sub("", event.name.decode("utf-8", errors="replace"))
                self._events.append((int(event.sample), name))
            elif event.type in (_EVENT_END, _EVENT_MSG_TERMINATED):
                self._events.append((int(event.sample), ""))
            index += 1
        return 0  # 0: go on synthesizing

    def set_voice(self, voice: str) -> None:
        """Select ``voice`` (``"en-us"``, ``"en-gb-x-rp+m3"``...); unknown names raise."""
        language, _, variant = voice.partition("+")
        if variant and self._variants is not None and variant not in self._variants:
            raise ValueError(f"unknown eSpeak NG voice variant {variant!r} in {voice!r}")
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"unknown eSpeak NG voice {language!r} (in {voice!r})")

    def synthesize(
        self,
        text: str,
        *,
        voice: str,
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        word_gap: int = 0,
        seed: int = 0,
    ) -> np.ndarray:
        """Speak ``text``; returns int16 samples at :attr:`sample_rate`, shape (samples,).

        Arguments
        ---------
        text : str
            Plain text (UTF-8).
        voice : str
            Language voice, optionally ``+variant``.
        rate : int
            Words per minute (80–450).
        pitch, pitch_range : int
            Base pitch and pitch range, 0–100 (50 is the voice's own).
        volume : int
            Amplitude, 0–200 (100 is normal).
        word_gap : int
            Extra pause between words, in units of 10 ms.
        seed : int
            Seed of eSpeak NG's own noise generator (otherwise seeded from the clock).
        """
        self.reload()
        self._lib.espeak_ng_SetRandSeed(int(seed) % 2**31)
        self.set_voice(voice)
        settings = {
            "rate": rate,
            "pitch": pitch,
            "pitch_range": pitch_range,
            "volume": volume,
            "word_gap": word_gap,
        }
        for name, value in settings.items():
            self._lib.espeak_SetParameter(_PARAMETERS[name], int(value), 0)
        data = text.encode("utf-8")
        self._chunks, self._events = [], []
        status = self._lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)

    def synthesize_aligned(self, text: str, **options) -> tuple[np.ndarray, list]:
        """:meth:`synthesize` (same arguments, same audio) and the phone alignment of the audio.

        Returns
        -------
        wav : np.ndarray
            int16 samples at :attr:`sample_rate`.
        segments : list of (start, end, phone)
            Every spoken phoneme (IPA, stress marks removed) from its start sample to the
            start of the next event (the next phoneme, a pause or the end); silences
            between them are not listed.
        """
        wav = self.synthesize(text, **options)
        events = sorted(self._events, key=lambda event: event[0])
        self._events = []
        segments = []
        for (start, phone), (end, _) in zip(events, [*events[1:], (len(wav), "")]):
            end = min(end, len(wav))
            if phone and end > start:
                segments.append((start, end, phone))
        return wav, segments

    def phonemize(self, text: str, *, voice: str) -> list[str]:
        """IPA phonemes of ``text`` as spoken by ``voice`` (stress marks removed)."""
        self.set_voice(voice)
        raw = text.encode("utf-8")  # kept referenced while eSpeak walks through it
        data = ctypes.c_char_p(raw)
        mode = _PHONEMES_IPA | (ord(_PHONEME_SEPARATOR) << 8)
        phonemes: list[str] = []
        while data.value:  # one clause per call; the pointer becomes NULL at the end
            clause = self._lib.espeak_TextToPhonemes(ctypes.byref(data), _CHARS_UTF8, mode)
            for word in (clause or b"").decode("utf-8").split():
                for phoneme in _STRIP.sub("", word).split(_PHONEME_SEPARATOR):
                    if phoneme:
                        phonemes.append(phoneme)
        return phonemes


_ENGINE: Espeak | None = None


def get_espeak() -> Espeak:
    """The process' eSpeak NG engine, initialised on first use.

    Raises
    ------
    EspeakUnavailableError
        When the library or its data cannot be loaded (the message says why).
    """
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    return _ENGINE
