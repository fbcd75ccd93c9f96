"""Per-task builders: what every clip of the corpus says, who says it and its labels.

Planning is pure and fast (no audio): :func:`plan_corpus` turns (minutes, seed) into a list
of :class:`Job` descriptions that :mod:`speechbrain_ext.corpus.render` turns into audio.
Each task receives a share of the requested minutes (:data:`PROPORTIONS`), split 80/10/10
over train/dev/test speakers; a split always gets a few clips (:data:`MIN_ITEMS`), so very
small corpora are larger than asked.

Example
-------
>>> jobs = plan_corpus(minutes=5, seed=0)
>>> sorted({job.task for job in jobs}) == sorted(PROPORTIONS)
True
>>> 0.8 < sum(job.est_seconds for job in jobs) / 300 < 1.5
True
>>> plan_corpus(minutes=0, seed=0)
Traceback (most recent call last):
...
ValueError: minutes must be > 0, got 0
"""

import random
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from speechbrain_ext.corpus import text as T
from speechbrain_ext.corpus.speakers import (
    STYLES,
    Prosody,
    Speaker,
    SpeakerPlan,
    plan_speakers,
    prosody,
)

# Share of the requested audio per task (the pretraining/ASR part is the largest).
PROPORTIONS = {
    "librispeech": 0.40,  # pretraining, ASR, PR
    "ks": 0.05,
    "ic": 0.06,
    "slurp": 0.08,
    "sf": 0.05,
    "er": 0.06,
    "spk": 0.08,  # shared by the sid and asv manifests
    "sd": 0.07,
    "qbe": 0.03,
    "cv_cy": 0.06,
    "cv_eu": 0.06,
}
SPLIT_SHARES = {"train": 0.8, "dev": 0.1, "test": 0.1}
# Downstream tasks scored by accuracy or WER get larger test sets, so that their scores on the
# built-in corpus are not decided by a handful of clips.
DOWNSTREAM_SPLIT_SHARES = {"train": 0.6, "dev": 0.1, "test": 0.3}
TASK_SPLIT_SHARES = {
    task: DOWNSTREAM_SPLIT_SHARES for task in ("ks", "ic", "slurp", "sf", "er", "cv_cy", "cv_eu")
}
MIN_ITEMS = 2  # clips per task and split, whatever the budget
LIBRISPEECH_SPLITS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
UTTERANCES_PER_CHAPTER = 12
KS_SHARES = {"silence": 0.1, "unknown": 0.2}  # the rest are the 10 keywords
ER_SESSIONS = {"train": (1, 2, 3), "dev": (4,), "test": (5,)}  # 2 speakers per session
QBE_QUERY_SHARE = 0.15
# Speaker recognition: least utterances per speaker (sid needs 3 per train speaker to
# split them 3 ways; asv needs 2 per test speaker for target trials).
SPK_UTTERANCES = {"train": 4, "dev": 2, "test": 2}
SPK_SPLIT_SHARES = {"train": 0.6, "dev": 0.1, "test": 0.3}  # a larger test set for trials
TYPICAL_SECONDS = 3.4  # a typical English sentence with padding, for speaker budgets
# Padding of silence before and after every utterance (seconds).
PAD_RANGE = (0.1, 0.4)


@dataclass(frozen=True)
class Utterance:
    """One synthesized utterance: the words spoken, how, and by whom."""

    words: tuple
    prosody: Prosody
    spk_id: str

    @property
    def text(self) -> str:
        """What eSpeak NG is given."""
        return " ".join(self.words)


@dataclass
class Job:
    """One audio file to make.

    Attributes
    ----------
    task : str
        Builder name (a key of :data:`PROPORTIONS`).
    split : str
        ``train``/``dev``/``test`` (``queries``/``docs`` for QbE).
    uid : str
        Utterance ID (manifest ``ID``).
    kind : str
        ``speech`` (one utterance), ``keyword`` (1-s clip), ``silence`` (1-s noise clip) or
        ``mixture`` (two overlapping speakers).
    path : str
        Audio path relative to the corpus folder.
    seed : int
        Seed of the clip's own random generator (recording conditions, placement).
    utterances : tuple of Utterance
        What is spoken (empty for silence).
    labels : dict
        Task columns known before synthesis.
    est_seconds : float
        Expected duration, for budgeting.
    options : dict
        Rendering options (``phonemes``, ``level_offset_db``...).
    """

    task: str
    split: str
    uid: str
    kind: str
    path: str
    seed: int
    utterances: tuple
    labels: dict
    est_seconds: float
    options: dict = field(default_factory=dict)

    @property
    def spk_id(self) -> str:
        """The speaker, or ``A_B`` for a two-speaker mixture."""
        return "_".join(u.spk_id for u in self.utterances)


def job_seed(seed: int, key: str) -> int:
    """A clip's seed from the corpus seed and the clip's key (independent of job order).

    Example
    -------
    >>> job_seed(0, "ks/ks-train-00001") == job_seed(0, "ks/ks-train-00001")
    True
    >>> job_seed(0, "a") != job_seed(1, "a")
    True
    """
    state = np.random.SeedSequence([seed, zlib.crc32(key.encode("utf-8"))]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def estimate_seconds(words, rate: int) -> float:
    """Rough duration of ``words`` spoken at ``rate`` words per minute, padding included."""
    return len(words) * 60.0 / rate * 0.85 + sum(PAD_RANGE)


class _Builder:
    """Shared state of one task's planning: its random generator, budget and speakers."""

    def __init__(self, task: str, *, seed: int, seconds: float, plan: SpeakerPlan):
        self.task = task
        self.split_shares = TASK_SPLIT_SHARES.get(task, SPLIT_SHARES)
        self.seed = seed
        self.seconds = seconds
        self.plan = plan
        self.rng = random.Random(f"{task}-{seed}")
        self.jobs: list[Job] = []

    def budget(self, split: str, shares: dict | None = None) -> float:
        return self.seconds * (self.split_shares if shares is None else shares)[split]

    def speakers(self, language: str, split: str) -> list[Speaker]:
        speakers = self.plan.speakers(language, split)
        self.rng.shuffle(speakers)
        return speakers

    def speech(self, split, uid, path, speaker, words, labels, *, style="neu", **options) -> Job:
        pro = prosody(speaker, style=style, rng=self.rng)
        job = Job(
            task=self.task,
            split=split,
            uid=uid,
            kind="speech",
            path=path,
            seed=job_seed(self.seed, f"{self.task}/{uid}"),
            utterances=(Utterance(tuple(words), pro, speaker.spk_id),),
            labels=labels,
            est_seconds=estimate_seconds(words, pro.rate),
            options=options,
        )
        self.jobs.append(job)
        return job

    def fill(self, split, speakers, make, *, budget=None, min_items=MIN_ITEMS) -> int:
        """Call ``make(index, speaker) -> estimated seconds`` round-robin over ``speakers``
        until the split's budget is spent (and at least ``min_items`` times); returns the
        number of calls.
        """
        budget = self.budget(split) if budget is None else budget
        count, total = 0, 0.0
        while total < budget or count < min_items:
            total += make(count, speakers[count % len(speakers)])
            count += 1
        return count


def _librispeech(b: _Builder) -> None:
    for split, ls_split in LIBRISPEECH_SPLITS.items():
        pending = []

        def make(i, spk, pending=pending):
            pending.append((spk, T.english_sentence(b.rng)))
            return estimate_seconds(pending[-1][1], spk.rate)

        b.fill(split, b.speakers("en", split), make)
        per_speaker = defaultdict(int)
        for spk, words in pending:  # chapters of UTTERANCES_PER_CHAPTER utterances
            count = per_speaker[spk.spk_id]
            per_speaker[spk.spk_id] += 1
            chapter = f"{int(spk.spk_id) * 10 + count // UTTERANCES_PER_CHAPTER + 1}"
            uid = f"{spk.spk_id}-{chapter}-{count % UTTERANCES_PER_CHAPTER:04d}"
            path = f"LibriSpeech/{ls_split}/{spk.spk_id}/{chapter}/{uid}.flac"
            b.speech(split, uid, path, spk, words, {"wrd": T.transcript(words)}, phonemes=True)


def _ks(b: _Builder) -> None:
    # Labels follow a fixed cycle of 10 (1 silence, 2 unknown, 7 keywords) so that every split
    # has each kind; the keywords themselves cycle through a shuffled list.
    keywords = list(T.KEYWORDS)
    b.rng.shuffle(keywords)
    for split in SPLIT_SHARES:

        def make(i, spk, split=split):
            uid = f"ks-{split}-{i:05d}"
            slot = i % 10
            if slot < round(10 * KS_SHARES["silence"]):
                label, words = T.SILENCE_LABEL, ()
            elif slot < round(10 * (KS_SHARES["silence"] + KS_SHARES["unknown"])):
                label, words = T.UNKNOWN_LABEL, (b.rng.choice(T.UNKNOWN_WORDS),)
            else:
                word = keywords[(i - i // 10 * 3 - 3) % len(keywords)]
                label, words = word, (word,)
            job = Job(
                task="ks",
                split=split,
                uid=uid,
                kind="keyword" if words else "silence",
                path=f"audio/ks/{split}/{uid}.flac",
                seed=job_seed(b.seed, f"ks/{uid}"),
                # a silence clip keeps the speaker of its slot ("recorded in that session")
                utterances=(Utterance(words, prosody(spk, rng=b.rng), spk.spk_id),),
                labels={"label": label},
                est_seconds=1.0,
            )
            b.jobs.append(job)
            return job.est_seconds

        b.fill(split, b.speakers("en", split), make)


def _simple(b: _Builder, language: str, draw) -> None:
    """Tasks with one utterance per clip: ``draw(rng) -> (words, labels)``."""
    for split in SPLIT_SHARES:

        def make(i, spk, split=split):
            words, labels = draw(b.rng)
            uid = f"{b.task}-{split}-{i:05d}"
            path = f"audio/{b.task}/{split}/{uid}.flac"
            return b.speech(split, uid, path, spk, words, labels).est_seconds

        b.fill(split, b.speakers(language, split), make)


def _ic(rng):
    cmd = T.fluent_command(rng)
    labels = {
        "action": cmd.action,
        "object": cmd.object,
        "location": cmd.location,
        "intent": cmd.intent,
        "wrd": T.transcript(cmd.words),
    }
    return cmd.words, labels


def _slurp(rng):
    req = T.slurp_request(rng)
    labels = {
        "scenario": req.scenario,
        "action": req.action,
        "intent": f"{req.scenario}_{req.action}",
        "wrd": T.transcript(req.words),
        "slots": req.slots,
    }
    return req.words, labels


def _sf(rng):
    req = T.snips_request(rng)
    return req.words, {
        "wrd": T.transcript(req.words),
        "slots": req.slots,
        "slot_wrd": req.slot_words,
    }


def _cv(language):
    def draw(rng):
        words = T.low_resource_sentence(rng, language)
        return words, {"wrd": T.transcript(words)}

    return draw


def _er(b: _Builder) -> None:
    for split, sessions in ER_SESSIONS.items():
        speakers = b.speakers("en", split)[: 2 * len(sessions)]
        session_of = {spk.spk_id: sessions[k // 2] for k, spk in enumerate(speakers)}

        def make(i, spk, split=split, session_of=session_of):
            emo = b.rng.choice(sorted(STYLES))
            words = T.english_sentence(b.rng)
            uid = f"er-{split}-{i:05d}"
            labels = {"emo": emo, "session": session_of[spk.spk_id]}
            level = 20.0 * np.log10(STYLES[emo].volume / 100.0)
            return b.speech(
                split, uid, f"audio/er/{split}/{uid}.flac", spk, words, labels,
                style=emo, level_offset_db=float(level),
            ).est_seconds  # fmt: skip

        b.fill(split, speakers, make)


def _spk(b: _Builder) -> None:
    # Speaker recognition: utterances grouped by speaker (VoxCeleb-like folders). sid splits
    # train speakers' utterances; asv trains on train speakers and tests on test speakers.
    for split in SPLIT_SHARES:

        def make(i, spk, split=split):
            words = T.english_sentence(b.rng)
            uid = f"spk-{split}-{i:05d}"
            path = f"audio/spk/{spk.spk_id}/{uid}.flac"
            return b.speech(split, uid, path, spk, words, {}).est_seconds

        # As many speakers as the budget gives SPK_UTTERANCES utterances each (at least 2).
        speakers = b.speakers("en", split)
        budget = b.budget(split, SPK_SPLIT_SHARES)
        wanted = int(budget / (SPK_UTTERANCES[split] * TYPICAL_SECONDS))
        speakers = speakers[: min(max(wanted, 2), len(speakers))]
        minimum = SPK_UTTERANCES[split] * len(speakers)
        b.fill(split, speakers, make, budget=budget, min_items=minimum)


def _sd(b: _Builder) -> None:
    for split in SPLIT_SHARES:
        speakers = b.speakers("en", split)

        def make(i, spk, split=split, speakers=speakers):
            other = b.rng.choice([s for s in speakers if s.spk_id != spk.spk_id])
            utts = []
            for who in (spk, other):
                words = T.english_sentence(b.rng)
                utts.append(Utterance(tuple(words), prosody(who, rng=b.rng), who.spk_id))
            uid = f"sd-{split}-{i:05d}"
            est = sum(estimate_seconds(u.words, u.prosody.rate) for u in utts) * 0.75
            job = Job(
                task="sd",
                split=split,
                uid=uid,
                kind="mixture",
                path=f"audio/sd/{split}/{uid}.flac",
                seed=job_seed(b.seed, f"sd/{uid}"),
                utterances=tuple(utts),
                labels={"rttm": f"audio/sd/{split}/{uid}.rttm", "num_spk": 2},
                est_seconds=est,
            )
            b.jobs.append(job)
            return job.est_seconds

        b.fill(split, speakers, make)


def _qbe(b: _Builder) -> None:
    # Queries are single spoken terms; every other document contains one of the terms.
    speakers = b.speakers("en", "test") + b.speakers("en", "dev")
    terms = list(T.QBE_TERMS)
    b.rng.shuffle(terms)

    def query(i, spk):
        term = terms[i % len(terms)]
        uid = f"qbe-query-{i:05d}"
        path = f"audio/qbe/queries/{uid}.flac"
        return b.speech(
            "queries", uid, path, spk, [term], {"wrd": T.transcript([term])}
        ).est_seconds

    def doc(i, spk):
        term = b.rng.choice(terms[:num_queries]) if i % 2 == 0 else None
        words = T.english_sentence(b.rng, noun=term)
        uid = f"qbe-doc-{i:05d}"
        labels = {"wrd": T.transcript(words)}
        return b.speech("docs", uid, f"audio/qbe/docs/{uid}.flac", spk, words, labels).est_seconds

    num_queries = b.fill("test", speakers, query, budget=b.seconds * QBE_QUERY_SHARE)
    b.fill("test", speakers[::-1], doc, budget=b.seconds * (1 - QBE_QUERY_SHARE))


BUILDERS = {
    "librispeech": _librispeech,
    "ks": _ks,
    "ic": lambda b: _simple(b, "en", _ic),
    "slurp": lambda b: _simple(b, "en", _slurp),
    "sf": lambda b: _simple(b, "en", _sf),
    "er": _er,
    "spk": _spk,
    "sd": _sd,
    "qbe": _qbe,
    "cv_cy": lambda b: _simple(b, "cy", _cv("cy")),
    "cv_eu": lambda b: _simple(b, "eu", _cv("eu")),
}


def plan_corpus(minutes: float, seed: int, *, plan: SpeakerPlan | None = None) -> list[Job]:
    """Every clip of a corpus of about ``minutes`` minutes (deterministic for ``seed``).

    Arguments
    ---------
    minutes : float
        Total amount of audio, distributed over tasks by :data:`PROPORTIONS`.
    seed : int
        Non-negative random seed.
    plan : SpeakerPlan, optional
        The speakers (default: ``plan_speakers(seed)``).
    """
    if not isinstance(minutes, int | float) or not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    plan = plan or plan_speakers(seed)
    jobs = []
    for task, share in PROPORTIONS.items():
        builder = _Builder(task, seed=seed, seconds=minutes * 60.0 * share, plan=plan)
        BUILDERS[task](builder)
        jobs += builder.jobs
    return jobs
