"""Mozilla Common Voice (any language) → ASR manifests.

Expected layout (one language folder of a Common Voice release, e.g. ``cv-corpus-*/cy``)::

    <data_folder>/{train,dev,test}.tsv     # tab-separated: client_id, path, sentence, ...
    <data_folder>/clips/<path>             # mp3 (48 or 32 kHz)

Clips are mp3, which soundfile (libsndfile >= 1.1) reads. Because the manifests promise 16 kHz
audio, ``convert=True`` (default) decodes each clip once, downmixes it, resamples it to 16 kHz and
writes ``<save_folder>/wav/<clip>.wav`` (resumable: an existing wav is kept); the manifest points
at that wav. With ``convert=False`` the manifest points at the mp3 and the recipe must resample
on the fly (the sample rate is then not checked).

Outputs ``<save_folder>/{train,dev,test}.csv`` with ``wrd``; ``spk_id`` is ``client_id``.
"""

import csv
import logging
import re
import unicodedata
from pathlib import Path

from speechbrain_ext.data.checks import AudioChecker, SkipCounter, require_folder
from speechbrain_ext.data.manifest import convert_audio, outputs_exist, write_manifest

logger = logging.getLogger(__name__)

_SPLITS = {"train": "train", "dev": "dev", "test": "test"}
_APOSTROPHES = re.compile(r"[’‘`´]")


def normalize_text(text: str, *, keep: str = "'") -> str:
    """Upper-case, strip punctuation and symbols (except ``keep``), collapse spaces.

    Unicode-aware (Welsh ``ŵ``, Basque ``ñ`` stay letters); typographic apostrophes become
    ``'``; a ``keep`` character is dropped where it does not sit between two letters.

    Example
    -------
    >>> normalize_text("“Bore da,” meddai’r dyn — ŵyr!")
    "BORE DA MEDDAI'R DYN ŴYR"
    >>> normalize_text("Kaixo, 'zer moduz'?")
    'KAIXO ZER MODUZ'
    """
    text = unicodedata.normalize("NFC", _APOSTROPHES.sub("'", text))
    chars = []
    for char in text:
        category = unicodedata.category(char)
        if char in keep:
            chars.append(char)
        elif category[0] in "PS":
            chars.append(" ")
        else:
            chars.append(char)
    words = []
    for word in "".join(chars).split():
        word = word.strip(keep)
        if word:
            words.append(word)
    return " ".join(words).upper()


def prepare_commonvoice(
    data_folder,
    save_folder,
    *,
    splits=("train", "dev", "test"),
    normalize: bool = True,
    convert: bool = True,
    skip_prep: bool = False,
    on_bad_audio: str = "skip",
) -> dict[str, Path]:
    """Write ``<save_folder>/<split>.csv`` for each Common Voice split.

    Arguments
    ---------
    data_folder, save_folder : str or Path
        Language folder (layout in the module docstring) and output folder.
    splits : sequence of str
        tsv names to read (``train``, ``dev``, ``test``, also ``validated``...).
    normalize : bool
        Apply :func:`normalize_text` to ``sentence`` (else keep it as is).
    convert : bool
        Convert clips to 16 kHz wav in ``<save_folder>/wav`` (see module docstring).
    skip_prep, on_bad_audio
        As in :func:`~speechbrain_ext.data.prepare.librispeech.prepare_librispeech`.

    Returns
    -------
    dict
        Split → path.
    """
    save_folder = Path(save_folder)
    outputs = {split: save_folder / f"{split}.csv" for split in splits}
    if skip_prep or outputs_exist(outputs.values(), what="CommonVoice"):
        return outputs

    data_folder = require_folder(data_folder, what="CommonVoice data_folder")
    clips = require_folder(data_folder / "clips", what="CommonVoice clips folder")
    for split in splits:
        tsv = data_folder / f"{split}.tsv"
        if not tsv.is_file():
            raise FileNotFoundError(f"CommonVoice split {split!r}: file not found: {tsv}")
        checker = AudioChecker(
            SkipCounter(f"commonvoice/{split}"), sample_rate=None, on_bad_audio=on_bad_audio
        )
        rows = []
        with open(tsv, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"client_id", "path", "sentence"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{tsv}: missing column(s) {sorted(missing)}")
            for entry in reader:
                source = clips / entry["path"]
                words = entry["sentence"] or ""
                words = normalize_text(words) if normalize else " ".join(words.split())
                if not words:
                    checker.skips.skip("empty sentence", entry["path"])
                    continue
                if checker.info(source) is None:
                    continue
                wav = source
                if convert:
                    wav = save_folder / "wav" / (Path(entry["path"]).stem + ".wav")
                    try:
                        duration = convert_audio(source, wav)
                    except RuntimeError:
                        checker.skips.skip("undecodable audio", source)
                        continue
                else:
                    duration = checker.duration(source)
                rows.append(
                    {
                        "ID": Path(entry["path"]).stem,
                        "duration": duration,
                        "wav": str(wav.resolve()),
                        "spk_id": entry["client_id"],
                        "wrd": words,
                    }
                )
        checker.skips.log(logger)
        write_manifest(outputs[split], rows, extra_columns=["wrd"])
    return outputs
