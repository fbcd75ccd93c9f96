"""CTC output units: characters (ASR), a small BPE (CommonVoice), phonemes (SUPERB PR), or
characters plus whole slot tags (SUPERB SF).

Every tokenizer reserves index 0 for the CTC blank, maps text to indices ``1..num_outputs-1``
with :meth:`encode` and back with :meth:`decode`.

Example
-------
>>> tok = CharTokenizer.from_texts(["HELLO WORLD", "HI"])
>>> ids = tok.encode("HI WORLD")
>>> tok.decode(ids), 0 in ids
('HI WORLD', False)
>>> tok.num_outputs  # blank, unk, space, D E H I L O R W
11
"""

from pathlib import Path

import sentencepiece as spm
from speechbrain.dataio.encoder import CTCTextEncoder

BLANK_INDEX = 0


class CharTokenizer:
    """Characters through SpeechBrain's ``CTCTextEncoder`` (blank 0, then ``<unk>``).

    Subclasses cut a text into other units by overriding :meth:`units` and :meth:`join`.
    """

    def __init__(self, encoder: CTCTextEncoder):
        self.encoder = encoder

    @classmethod
    def from_texts(cls, texts) -> "CharTokenizer":
        """Collect the units of ``texts`` (the training transcripts)."""
        encoder = CTCTextEncoder()
        encoder.insert_blank(index=BLANK_INDEX)
        encoder.add_unk()
        encoder.update_from_iterable((cls.units(text) for text in texts), sequence_input=True)
        encoder.ignore_len()  # the label set is whatever the transcripts hold
        return cls(encoder)

    @staticmethod
    def units(text: str) -> list[str]:
        """The output units of ``text``: its characters."""
        return list(text)

    @staticmethod
    def join(units) -> str:
        """The text of a sequence of units."""
        return "".join(units)

    @property
    def num_outputs(self) -> int:
        """Output size of the CTC layer (blank included)."""
        return len(self.encoder)

    def encode(self, text: str) -> list[int]:
        """Indices of the units of ``text`` (unknown ones map to ``<unk>``)."""
        return self.encoder.encode_sequence(self.units(text))

    def decode(self, ids) -> str:
        """Text of a sequence of indices (blanks already removed)."""
        return self.join(self.encoder.decode_ndim([int(i) for i in ids]))


class PhonemeTokenizer(CharTokenizer):
    """Space-separated symbols as units (the built-in LibriSpeech ``phn`` column: ``d a t ɹ
    oʊ d``), decoded back to space-separated symbols, so that a word error rate over the
    decoded texts is the phoneme error rate.

    Example
    -------
    >>> tok = PhonemeTokenizer.from_texts(["d a t", "ɹ oʊ d"])
    >>> tok.encode("oʊ d") == [tok.encoder.lab2ind["oʊ"], tok.encoder.lab2ind["d"]]
    True
    >>> tok.decode(tok.encode("d oʊ t")), tok.num_outputs  # blank, unk, d a t ɹ oʊ
    ('d oʊ t', 7)
    """

    @staticmethod
    def units(text: str) -> list[str]:
        """The symbols of ``text``."""
        return text.split()

    @staticmethod
    def join(units) -> str:
        """Symbols separated by spaces."""
        return " ".join(units)


class SlotTokenizer(CharTokenizer):
    """Characters, except that each slot tag (``B-city``, ``E-city``: a word starting with
    ``B-`` or ``E-``) is one unit, as in SUPERB's slot filling: the CTC target of
    ``B-city TORONTO E-city`` is ``[B-city, ' ', T, O, R, O, N, T, O, ' ', E-city]``.

    Example
    -------
    >>> tok = SlotTokenizer.from_texts(["GO TO B-city TORONTO E-city"])
    >>> SlotTokenizer.units("B-city TORONTO E-city")[:3]
    ['B-city', ' ', 'T']
    >>> len(tok.encode("B-city TORONTO E-city")), tok.decode(tok.encode("TO B-city TOGO E-city"))
    (11, 'TO B-city TOGO E-city')
    """

    @staticmethod
    def units(text: str) -> list[str]:
        """Characters of the words, whole tags, single spaces between words."""
        units = []
        for index, word in enumerate(text.split()):
            if index:
                units.append(" ")
            units.extend([word] if word.startswith(("B-", "E-")) else list(word))
        return units


class BPETokenizer:
    """A sentencepiece BPE model trained on the training transcripts; ids shifted by one.

    Arguments
    ---------
    model_file : str or Path
        A trained sentencepiece model.
    """

    def __init__(self, model_file):
        self.model_file = Path(model_file)
        self.processor = spm.SentencePieceProcessor(model_file=str(model_file))

    @classmethod
    def train(cls, texts, *, save_folder, vocab_size: int = 100) -> "BPETokenizer":
        """Train (or reuse) ``<save_folder>/bpe<vocab_size>.model`` on ``texts``.

        ``vocab_size`` is an upper bound: a small corpus yields fewer units.

        Example
        -------
        >>> texts = ["DA IAWN DIOLCH", "DIOLCH YN FAWR", "BORE DA"] * 5
        >>> tok = BPETokenizer.train(texts, save_folder=getfixture("tmp_path"), vocab_size=30)
        >>> tok.decode(tok.encode("BORE DA DIOLCH"))
        'BORE DA DIOLCH'
        """
        save_folder = Path(save_folder)
        save_folder.mkdir(parents=True, exist_ok=True)
        prefix = save_folder / f"bpe{vocab_size}"
        model_file = prefix.with_suffix(".model")
        if not model_file.is_file():
            texts = [text for text in texts if text.strip()]
            if not texts:
                raise ValueError("cannot train a BPE model: no training transcripts")
            corpus = save_folder / f"bpe{vocab_size}_train.txt"
            corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
            spm.SentencePieceTrainer.train(
                input=str(corpus),
                model_prefix=str(prefix),
                vocab_size=vocab_size,
                model_type="bpe",
                character_coverage=1.0,
                hard_vocab_limit=False,
                bos_id=-1,
                eos_id=-1,
                unk_id=0,
                minloglevel=2,
            )
        return cls(model_file)

    @property
    def num_outputs(self) -> int:
        """Output size of the CTC layer (blank included)."""
        return self.processor.get_piece_size() + 1

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text``, shifted by one past the blank."""
        return [i + 1 for i in self.processor.encode(text)]

    def decode(self, ids) -> str:
        """Text of a sequence of shifted ids (blanks already removed)."""
        return self.processor.decode([int(i) - 1 for i in ids if int(i) != BLANK_INDEX])


SYMBOL_TOKENIZERS = {"char": CharTokenizer, "phoneme": PhonemeTokenizer, "slot": SlotTokenizer}


def build_tokenizer(kind: str, texts, *, save_folder=None, vocab_size: int = 100):
    """The tokenizer ``kind`` fitted on ``texts``: ``"char"`` (:class:`CharTokenizer`),
    ``"phoneme"`` (:class:`PhonemeTokenizer`), ``"slot"`` (:class:`SlotTokenizer`) or ``"bpe"``
    (:class:`BPETokenizer`, ``vocab_size`` units, its model in ``save_folder``).
    """
    if kind in SYMBOL_TOKENIZERS:
        return SYMBOL_TOKENIZERS[kind].from_texts(texts)
    if kind == "bpe":
        if save_folder is None:
            raise ValueError("a BPE tokenizer needs a save_folder for its model")
        return BPETokenizer.train(texts, save_folder=save_folder, vocab_size=vocab_size)
    valid = ", ".join(sorted([*SYMBOL_TOKENIZERS, "bpe"]))
    raise ValueError(f"unknown tokenizer {kind!r}; valid: {valid}")
