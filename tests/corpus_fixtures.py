"""Tiny fake corpora in the real on-disk layouts, for the preparer tests.

Each ``make_<corpus>(root)`` writes a handful of 0.1-0.5 s synthetic clips (sines and noise) in
the corpus' own folder structure and formats, and returns a dict of facts the tests check
(paths, expected IDs...). Everything is deterministic.
"""

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone(seconds: float, *, sample_rate: int = SR, freq: float = 440.0, seed: int = 0):
    """A sine plus a little noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)
    return x.astype("float32")


def write_audio(path, seconds, *, sample_rate=SR, freq=440.0, seed=0, fmt=None, data=None):
    """Write a clip (``data`` or a tone) at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = tone(seconds, sample_rate=sample_rate, freq=freq, seed=seed)
    sf.write(path, data, sample_rate, format=fmt)
    return path


def write_empty(path):
    """A zero-byte audio file (an interrupted download)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_corrupt(path):
    """Bytes that no audio reader accepts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not audio" * 8)
    return path


# ---------------------------------------------------------------- LibriSpeech
LIBRI_TEXT = {
    "dev-clean": {
        ("84", "121123"): ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"],
        ("174", "50561"): ["FORGOTTEN TOO THE NAME OF GILLIAN"],
    },
    "test-clean": {("1089", "134686"): ["HE HOPED THERE WOULD BE STEW", "STUFF IT INTO YOU"]},
}


def make_librispeech(root, *, nested=True):
    """``<root>/LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` + trans.txt.

    Returns ``{split: {utt_id: (words, duration)}}``.
    """
    base = Path(root) / "LibriSpeech" if nested else Path(root)
    expected = {}
    seed = 0
    for split, chapters in LIBRI_TEXT.items():
        expected[split] = {}
        for (spk, chapter), lines in chapters.items():
            folder = base / split / spk / chapter
            trans = []
            for index, words in enumerate(lines):
                utt_id = f"{spk}-{chapter}-{index:04d}"
                seconds = 0.1 + 0.05 * seed
                write_audio(folder / f"{utt_id}.flac", seconds, seed=seed, fmt="FLAC")
                trans.append(f"{utt_id} {words}")
                expected[split][utt_id] = (words, seconds)
                seed += 1
            (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(trans) + "\n")
    return expected


# ---------------------------------------------------------------- VoxCeleb1
VOX_FILES = {  # relative path -> iden_split number
    "id10001/1zcIwhmdeo4/00001.wav": 1,
    "id10001/1zcIwhmdeo4/00002.wav": 2,
    "id10001/7w0IBEWc9Qw/00001.wav": 3,
    "id10002/6WO410QOeuo/00001.wav": 1,
    "id10002/C7k7C-PDvAA/00001.wav": 3,
    "id10270/x6uYqmx31kE/00001.wav": 1,
    "id10270/8jEAjG6SegY/00008.wav": 2,
    "id10300/ize_eiCFEg0/00003.wav": 3,
}
VOX_TRIALS = [
    ("1", "id10270/x6uYqmx31kE/00001.wav", "id10270/8jEAjG6SegY/00008.wav"),
    ("0", "id10270/x6uYqmx31kE/00001.wav", "id10300/ize_eiCFEg0/00003.wav"),
]


def make_voxceleb1(root, *, split_archives=True):
    """``vox1_dev_wav/wav/...`` and ``vox1_test_wav/wav/...`` + iden_split.txt, veri_test2.txt."""
    root = Path(root)
    test_speakers = {"id10270", "id10300"}
    for index, rel in enumerate(VOX_FILES):
        if split_archives:
            archive = "vox1_test_wav" if rel.split("/")[0] in test_speakers else "vox1_dev_wav"
            path = root / archive / "wav" / rel
        else:
            path = root / "wav" / rel
        write_audio(path, 0.1 + 0.02 * index, seed=index, freq=200 + 50 * index)
    (root / "iden_split.txt").write_text("".join(f"{n} {rel}\n" for rel, n in VOX_FILES.items()))
    (root / "veri_test2.txt").write_text("".join(" ".join(t) + "\n" for t in VOX_TRIALS))
    return root


# ---------------------------------------------------------------- SLURP
SLURP_ITEMS = {
    "train": [
        (
            101,
            "wake me up at five am",
            "wake me up at [time : five am]",
            "alarm",
            "set",
            ["audio-1-headset.flac", "audio-1.flac"],
        ),
        (102, "what is the weather", "what is the weather", "weather", "query", ["audio-2.flac"]),
    ],
    "train_synthetic": [
        (201, "play jazz", "play [music_genre : jazz]", "play", "music", ["audio-s1.flac"]),
    ],
    "devel": [
        (301, "turn off the lights", "turn off the lights", "iot", "hue_lightoff", ["audio-3.flac"])
    ],
    "test": [
        (
            401,
            "set an alarm for monday",
            "set an alarm for [date : monday]",
            "alarm",
            "set",
            ["audio-4.flac"],
        )
    ],
}


def make_slurp(root, *, metadata=True):
    """``dataset/slurp/*.jsonl`` (+ metadata.json), ``slurp_real/*.flac``, ``slurp_synth/``."""
    root = Path(root)
    text_dir = root / "dataset" / "slurp"
    text_dir.mkdir(parents=True, exist_ok=True)
    meta, seed = {}, 0
    for split, items in SLURP_ITEMS.items():
        lines = []
        for slurp_id, sentence, annotation, scenario, action, files in items:
            recordings = [
                {"file": f, "wer": 0.0, "ent_wer": 0.0, "status": "correct"} for f in files
            ]
            lines.append(
                json.dumps(
                    {
                        "slurp_id": slurp_id,
                        "sentence": sentence,
                        "sentence_annotation": annotation,
                        "intent": f"{scenario}_{action}",
                        "action": action,
                        "scenario": scenario,
                        "tokens": [],
                        "recordings": recordings,
                    }
                )
            )
            folder = "slurp_synth" if split == "train_synthetic" else "slurp_real"
            for name in files:
                write_audio(root / folder / name, 0.1 + 0.03 * seed, seed=seed, fmt="FLAC")
                seed += 1
            if split != "train_synthetic":
                meta[str(slurp_id)] = {"recordings": {f: {"usrid": f"U{slurp_id}"} for f in files}}
        (text_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    if metadata:
        (text_dir / "metadata.json").write_text(json.dumps(meta))
    return root


# ---------------------------------------------------------------- IEMOCAP
IEMOCAP_LABELS = {  # session -> dialog -> [(utt, emotion)]
    1: {
        "Ses01F_impro01": [
            ("Ses01F_impro01_F000", "neu"),
            ("Ses01F_impro01_M000", "fru"),
            ("Ses01F_impro01_F001", "exc"),
        ]
    },
    2: {
        "Ses02M_script01_1": [("Ses02M_script01_1_M000", "ang"), ("Ses02M_script01_1_F003", "sad")]
    },
}


def make_iemocap(root):
    """``IEMOCAP_full_release/Session{n}/sentences/wav/<dialog>/<utt>.wav`` + EmoEvaluation."""
    base = Path(root) / "IEMOCAP_full_release"
    seed = 0
    for session, dialogs in IEMOCAP_LABELS.items():
        for dialog, utts in dialogs.items():
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for index, (utt, emotion) in enumerate(utts):
                write_audio(
                    base / f"Session{session}/sentences/wav/{dialog}/{utt}.wav",
                    0.1 + 0.02 * seed,
                    seed=seed,
                )
                seed += 1
                lines += [
                    f"[{index * 2.0:.4f} - {index * 2.0 + 1.5:.4f}]\t{utt}\t{emotion}\t"
                    "[2.5000, 3.0000, 3.5000]",
                    f"C-E1:\t{emotion.capitalize()};\t()",
                    "",
                ]
            path = base / f"Session{session}/dialog/EmoEvaluation/{dialog}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines))
    return base


# ---------------------------------------------------------------- CommonVoice
CV_ROWS = {
    "train": [
        ("c1", "common_voice_cy_1.mp3", "Bore da, ffrind!"),
        ("c2", "common_voice_cy_2.mp3", "Sut wyt ti’n?"),
    ],
    "dev": [("c3", "common_voice_cy_3.mp3", "Diolch yn fawr.")],
    "test": [("c4", "common_voice_cy_4.mp3", "Hwyl fawr")],
}


def make_commonvoice(root):
    """``<lang>/{train,dev,test}.tsv`` + ``clips/*.mp3`` at 48 kHz."""
    root = Path(root)
    header = (
        "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"
    )
    seed = 0
    for split, rows in CV_ROWS.items():
        lines = [header]
        for client, clip, sentence in rows:
            write_audio(root / "clips" / clip, 0.3, sample_rate=48000, seed=seed, fmt="MP3")
            seed += 1
            lines.append(f"{client}\t{clip}\t{sentence}\t2\t0\t\t\t\tcy\t")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


# ---------------------------------------------------------------- Speech Commands
SC_FILES = {  # word -> [(hash, n, split)]
    "yes": [("0a7c2a8d", 0, "train"), ("0b09edd3", 0, "dev"), ("0c2ca723", 0, "test")],
    "stop": [("0a7c2a8d", 1, "train"), ("1a5b9ca4", 0, "train")],
    "marvin": [("0a7c2a8d", 0, "train"), ("0c2ca723", 1, "test")],
    "bed": [("0b09edd3", 2, "dev")],
}


def make_speech_commands(root):
    """``<word>/<hash>_nohash_<n>.wav`` + validation/testing lists + ``_background_noise_``."""
    root = Path(root)
    lists = {"dev": [], "test": []}
    seed = 0
    for word, files in SC_FILES.items():
        for spk, n, split in files:
            rel = f"{word}/{spk}_nohash_{n}.wav"
            write_audio(root / rel, 0.2, seed=seed, freq=300 + 20 * seed)
            seed += 1
            if split in lists:
                lists[split].append(rel)
    (root / "validation_list.txt").write_text("\n".join(lists["dev"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
    rng = np.random.default_rng(0)
    for name in ("white_noise", "running_tap"):
        write_audio(
            root / "_background_noise_" / f"{name}.wav",
            0.0,
            data=(0.1 * rng.standard_normal(SR * 3)).astype("float32"),
        )
    (root / "_background_noise_" / "README.md").write_text("noise")
    return root


# ---------------------------------------------------------------- Fluent Speech Commands
FSC_ROWS = {
    "train": [
        ("spkA", "Turn on the lights", "activate", "lights", "none"),
        ("spkA", "Turn down the heat in the kitchen", "decrease", "heat", "kitchen"),
        ("spkB", "Play the music", "activate", "music", "none"),
    ],
    "valid": [("spkC", "Bring me my shoes", "bring", "shoes", "none")],
    "test": [("spkD", "Switch off the lamp", "deactivate", "lamp", "none")],
}


def make_fluent_speech_commands(root):
    """``fluent_speech_commands_dataset/data/*_data.csv`` + ``wavs/speakers/<spk>/<uuid>.wav``."""
    base = Path(root) / "fluent_speech_commands_dataset"
    seed = 0
    for split, rows in FSC_ROWS.items():
        lines = [",path,speakerId,transcription,action,object,location"]
        for index, (spk, text, action, obj, location) in enumerate(rows):
            rel = f"wavs/speakers/{spk}/{seed:08x}-4474-11e9.wav"
            write_audio(base / rel, 0.15, seed=seed)
            seed += 1
            lines.append(f"{index},{rel},{spk},{text},{action},{obj},{location}")
        (base / "data").mkdir(parents=True, exist_ok=True)
        (base / "data" / f"{split}_data.csv").write_text("\n".join(lines) + "\n")
    return base


# ---------------------------------------------------------------- Audio SNIPS
SNIPS_LINES = [
    ("Ivy-snips-train-0", "play some jazz now", "O O B-genre O", "PlayMusic"),
    ("Joey-snips-train-1", "book a table in new york", "O O O O B-city I-city", "BookRestaurant"),
    (
        "Aditi-snips-valid-0",
        "rate this book five stars",
        "O O B-object B-rating I-rating",
        "RateBook",
    ),
    ("Brian-snips-test-0", "will it rain tomorrow ?", "O O O B-time O", "GetWeather"),
]


def make_snips(root):
    """``all.iob.snips.txt`` + ``{train,valid,test}/<uid>.wav``."""
    root = Path(root)
    lines = []
    for seed, (uid, words, tags, intent) in enumerate(SNIPS_LINES):
        lines.append(f"{uid} BOS {words} EOS\tO {tags} {intent}")
        split = uid.split("-")[2]
        write_audio(root / split / f"{uid}.wav", 0.12, seed=seed)
    (root / "all.iob.snips.txt").write_text("\n".join(lines) + "\n")
    return root


# ---------------------------------------------------------------- LibriMix
def make_librimix(root):
    """``Libri2Mix/wav16k/min/{train-100,dev,test}/{mix_both,s1,s2}/<id1>_<id2>.wav``.

    s1 speaks over [0.1, 0.3) s, s2 over [0.25, 0.45) s of a 0.5 s mixture.
    Returns ``{split: mix_id}``.
    """
    base = Path(root) / "Libri2Mix" / "wav16k" / "min"
    mixes = {
        "train-100": "84-121123-0000_174-50561-0001",
        "dev": "1089-134686-0000_121-121726-0002",
        "test": "2961-960-0000_4446-2271-0003",
    }
    n = SR // 2
    for seed, (split, mix_id) in enumerate(mixes.items()):
        s1, s2 = np.zeros(n, "float32"), np.zeros(n, "float32")
        s1[int(0.1 * SR) : int(0.3 * SR)] = tone(0.2, seed=seed, freq=300)
        s2[int(0.25 * SR) : int(0.45 * SR)] = tone(0.2, seed=seed + 7, freq=500)
        write_audio(base / split / "s1" / f"{mix_id}.wav", 0, data=s1)
        write_audio(base / split / "s2" / f"{mix_id}.wav", 0, data=s2)
        noise = 0.001 * np.random.default_rng(seed).standard_normal(n).astype("float32")
        write_audio(base / split / "mix_both" / f"{mix_id}.wav", 0, data=s1 + s2 + noise)
    return mixes


# ---------------------------------------------------------------- QUESST 2014
def make_quesst(root):
    """``quesst14Database/{Audio,dev_queries,eval_queries,scoring}`` at 8 kHz."""
    base = Path(root) / "quesst14Database"
    docs = ["quesst14_00001", "quesst14_00002", "quesst14_00003"]
    queries = {"dev": ["quesst14_dev_0001", "quesst14_dev_0002"], "eval": ["quesst14_eval_0001"]}
    langs = {
        "quesst14_00001": "nnenglish",
        "quesst14_00002": "basque",
        "quesst14_00003": "nnenglish",
        "quesst14_dev_0001": "nnenglish",
        "quesst14_dev_0002": "basque",
        "quesst14_eval_0001": "nnenglish",
    }
    for seed, doc in enumerate(docs):
        write_audio(base / "Audio" / f"{doc}.wav", 0.4, sample_rate=8000, seed=seed)
    for split, names in queries.items():
        for seed, name in enumerate(names):
            write_audio(
                base / f"{split}_queries" / f"{name}.wav", 0.15, sample_rate=8000, seed=10 + seed
            )
    scoring = base / "scoring"
    gt = {
        "dev": [
            ("quesst14_00001", "quesst14_dev_0001"),
            ("quesst14_00003", "quesst14_dev_0001"),
            ("quesst14_00002", "quesst14_dev_0002"),
        ],
        "eval": [("quesst14_00003", "quesst14_eval_0001")],
    }
    for split, pairs in gt.items():
        folder = scoring / f"groundtruth_quesst14_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"quesst14_{split}.rttm").write_text(
            "".join(f"LEXEME {doc} 1 0.10 0.20 {query} lex <NA> <NA>\n" for doc, query in pairs)
        )
        (folder / f"quesst14_{split}.tlist.xml").write_text("<termlist/>\n")
    (scoring / "language_key_utterances.lst").write_text(
        "".join(f"Audio/{d}.wav {langs[d]}\n" for d in docs)
    )
    for split, names in queries.items():
        (scoring / f"language_key_{split}.lst").write_text(
            "".join(f"{split}_queries/{q}.wav {langs[q]}\n" for q in names)
        )
    return base
