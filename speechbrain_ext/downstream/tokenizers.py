"""CTC output units for the ASR tasks: characters (LibriSpeech) or a small BPE (CommonVoice).

Both tokenizers reserve index 0 for the CTC blank, map text to indices ``1..num_outputs-1`` with
:meth:`encode` and back with :meth:`decode`.

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
    """Characters through SpeechBrain's ``CTCTextEncoder`` (blank 0, then ``<unk>``)."""

    def __init__(self, encoder: CTCTextEncoder):
        self.encoder = encoder

    @classmethod
    def from_texts(cls, texts) -> "CharTokenizer":
        """Collect the characters of ``texts`` (the training transcripts)."""
        encoder = CTCTextEncoder()
        encoder.insert_blank(index=BLANK_INDEX)
        encoder.add_unk()
        encoder.update_from_iterable((list(text) for text in texts), sequence_input=True)
        encoder.ignore_len()  # the label set is whatever the transcripts hold
        return cls(encoder)

    @property
    def num_outputs(self) -> int:
        """Output size of the CTC layer (blank included)."""
        return len(self.encoder)

    def encode(self, text: str) -> list[int]:
        """Indices of the characters of ``text`` (unknown ones map to ``<unk>``)."""
        return self.encoder.encode_sequence(list(text))

    def decode(self, ids) -> str:
        """Text of a sequence of indices (blanks already removed)."""
        return "".join(self.encoder.decode_ndim([int(i) for i in ids]))


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


def build_tokenizer(kind: str, texts, *, save_folder=None, vocab_size: int = 100):
    """``"char"`` → :class:`CharTokenizer`, ``"bpe"`` → :class:`BPETokenizer` on ``texts``."""
    if kind == "char":
        return CharTokenizer.from_texts(texts)
    if kind == "bpe":
        if save_folder is None:
            raise ValueError("a BPE tokenizer needs a save_folder for its model")
        return BPETokenizer.train(texts, save_folder=save_folder, vocab_size=vocab_size)
    raise ValueError(f"unknown tokenizer {kind!r}; valid: bpe, char")
