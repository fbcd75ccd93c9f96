"""Scoring helpers on top of SpeechBrain's metrics (``ErrorRateStats``, ``EER``).

Example
-------
>>> import torch
>>> emb = {"a1": torch.tensor([1.0, 0.0]), "a2": torch.tensor([0.9, 0.1]),
...        "b1": torch.tensor([0.0, 1.0])}
>>> trials = [(1, "a1", "a2"), (0, "a1", "b1"), (0, "a2", "b1")]
>>> cosine_eer(emb, trials)
0.0
>>> word_error_rate(["HELLO WORLD"], ["HELLO WORD"])
50.0
"""

import torch
import torch.nn.functional as F
from speechbrain.decoders.ctc import ctc_greedy_decode
from speechbrain.utils.metric_stats import EER, ErrorRateStats

from speechbrain_ext.downstream.tokenizers import BLANK_INDEX


def ctc_greedy_texts(log_probs: torch.Tensor, lens: torch.Tensor, tokenizer) -> list[str]:
    """Best-path CTC decoding of (batch, time, tokens) log-probabilities into texts."""
    hyps = ctc_greedy_decode(log_probs, lens, blank_id=BLANK_INDEX)
    return [tokenizer.decode(hyp) for hyp in hyps]


def add_word_errors(stats: ErrorRateStats, ids, hyps, refs) -> None:
    """Add hypothesis and reference texts (space-separated words) to ``stats``."""
    stats.append(ids, predict=[h.split() for h in hyps], target=[r.split() for r in refs])


def word_error_rate(hyps, refs) -> float:
    """WER in percent of hypothesis against reference texts, via ``ErrorRateStats``."""
    stats = ErrorRateStats()
    add_word_errors(stats, [str(i) for i in range(len(refs))], hyps, refs)
    return float(stats.summarize("WER"))


def cosine_eer(embeddings: dict, trials) -> float:
    """Equal error rate (percent) of cosine scoring over verification trials.

    Arguments
    ---------
    embeddings : dict
        Utterance id → embedding (1-D tensor).
    trials : iterable of (label, enrol_id, test_id)
        ``label`` 1 for a same-speaker trial, 0 otherwise.
    """
    positives, negatives = [], []
    for label, enrol, test in trials:
        for utt in (enrol, test):
            if utt not in embeddings:
                raise KeyError(f"trial uses utterance {utt!r} that has no embedding")
        score = F.cosine_similarity(embeddings[enrol], embeddings[test], dim=-1)
        (positives if int(label) == 1 else negatives).append(float(score))
    if not positives or not negatives:
        raise ValueError(
            f"EER needs both target and non-target trials, got {len(positives)} and "
            f"{len(negatives)}"
        )
    eer, _ = EER(torch.tensor(positives), torch.tensor(negatives))
    return 100.0 * float(eer)


def all_pair_trials(speakers: dict, *, max_utterances: int = 200) -> list[tuple]:
    """Every pair of utterances as a trial, (label, id_a, id_b), label 1 for the same speaker.

    Arguments
    ---------
    speakers : dict
        Utterance id → speaker id.
    max_utterances : int
        Above this many utterances, an evenly spaced subset (in sorted id order) is used.

    Example
    -------
    >>> all_pair_trials({"a1": "A", "a2": "A", "b1": "B"})
    [(1, 'a1', 'a2'), (0, 'a1', 'b1'), (0, 'a2', 'b1')]
    """
    ids = sorted(speakers)
    if len(ids) > max_utterances:
        step = len(ids) / max_utterances
        ids = [ids[int(i * step)] for i in range(max_utterances)]
    return [
        (int(speakers[a] == speakers[b]), a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]
    ]


def accuracy(predictions, targets) -> float:
    """Percentage of equal entries.

    Example
    -------
    >>> accuracy([1, 2, 3, 4], [1, 2, 0, 0])
    50.0
    """
    predictions, targets = list(predictions), list(targets)
    if len(predictions) != len(targets) or not targets:
        raise ValueError(f"accuracy of {len(predictions)} predictions for {len(targets)} targets")
    return 100.0 * sum(int(p == t) for p, t in zip(predictions, targets)) / len(targets)
