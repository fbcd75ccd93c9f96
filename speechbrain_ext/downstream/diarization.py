"""The ``diarization`` kind (SUPERB SD): a frame probe trained with permutation-invariant BCE;
test DER.

Each mixture's reference is its RTTM (manifest column ``task.label``, ``rttm``: one file per
mixture, as the built-in corpus and the LibriMix preparer write them). Training targets are the
RTTM turns as 0/1 activity at the encoder's frame rate (``16000 / downsample_rate`` frames per
second: 100 for the filterbank baseline, 50 for a 20 ms encoder), one column per speaker in
order of first appearance (:func:`mixture_labels`). The probe (``lstm_pit``, SUPERB's LSTM
head) gives one logit per speaker and frame; the loss is ``pit_bce_loss``. At test time the
logits are thresholded and median-filtered (``logits_to_activity``, yaml keys ``threshold``
and ``median_filter``) and scored against the RTTM turns by :func:`score_diarization`: DER with
no collar and overlapped speech scored, as SUPERB (``dscore``'s defaults), the mixture's
``duration`` being the scored region. Dev DER picks the checkpoint and anneals the learning
rate.

Example
-------
>>> turns = {"m": ([(0.0, 0.2, "a"), (0.1, 0.3, "b")], 0.4)}
>>> labels = mixture_labels(turns["m"][0], num_frames=4, frame_rate=10.0, num_speakers=2)
>>> logits = 20.0 * labels - 10.0  # confident and right
>>> score_diarization({"m": logits}, turns, frame_rate=10.0)["DER"]
0.0
>>> score_diarization({"m": torch.full((4, 2), -10.0)}, turns, frame_rate=10.0)["missed"]
100.0
"""

from collections.abc import Mapping, Sequence

import speechbrain as sb
import torch

from speechbrain_ext.data.manifest import read_manifest
from speechbrain_ext.downstream import pipeline
from speechbrain_ext.downstream.brains import ProbeBrain
from speechbrain_ext.downstream.kinds import KINDS
from speechbrain_ext.downstream.task import SPLITS, Task
from speechbrain_ext.nnet.masking import wav_lens_to_lengths
from speechbrain_ext.superb.diarization import frame_labels, logits_to_activity, pit_bce_loss
from speechbrain_ext.superb.metrics import (
    activity_to_annotation,
    diarization_error_rate,
    read_rttm,
    turns_to_annotation,
)

SAMPLE_RATE = 16000  # the manifests' audio (checked by validate_manifests)

Turns = list[tuple[float, float, str]]


def mixture_turns(rttm, recording: str) -> Turns:
    """The (start, end, speaker) turns of ``recording`` in the RTTM file ``rttm``.

    A per-mixture file naming one other recording is read as that mixture's (its id need not
    be the manifest's); a file without speech gives no turns.
    """
    turns = read_rttm(rttm)
    if recording in turns:
        return turns[recording]
    if len(turns) == 1:
        return next(iter(turns.values()))
    if not turns:
        return []
    raise KeyError(f"{rttm} has no recording {recording!r} (it holds {sorted(turns)[:5]})")


def mixture_labels(
    turns: Turns, *, num_frames: int, frame_rate: float, num_speakers: int
) -> torch.Tensor:
    """0/1 activity (num_frames, num_speakers) of a mixture's turns (``frame_labels``), speakers
    in order of first appearance; columns of absent speakers are 0.
    """
    labels, speakers = frame_labels(turns, num_frames=num_frames, frame_rate=frame_rate)
    if len(speakers) > num_speakers:
        raise ValueError(
            f"{len(speakers)} speakers ({', '.join(speakers)}) for a {num_speakers}-speaker probe"
        )
    return torch.nn.functional.pad(labels, (0, num_speakers - len(speakers)))


def score_diarization(
    logits: Mapping[str, torch.Tensor],
    references: Mapping[str, tuple[Turns, float]],
    *,
    frame_rate: float,
    threshold: float = 0.5,
    median: int = 1,
) -> dict[str, float]:
    """DER of frame logits against reference turns (no collar, overlap scored), in percent.

    Arguments
    ---------
    logits : mapping of recording id → (frames, speakers) tensor
        Valid frames only; frame ``k`` covers ``[k, k + 1) / frame_rate``.
    references : mapping of recording id → (turns, duration)
        Reference (start, end, speaker) turns and the scored duration (seconds).
    frame_rate : float
        Frames per second.
    threshold, median : float, int
        Activity threshold on the sigmoid and median filter width (``logits_to_activity``).

    Returns
    -------
    dict
        ``DER``, ``missed``, ``false_alarm``, ``confusion`` (percent of the reference speech)
        and ``speech_seconds`` (the reference speech, overlap counted per speaker).
    """
    hypotheses, truth, durations = {}, {}, {}
    for uri, scores in logits.items():
        turns, duration = references[uri]
        activity = logits_to_activity(scores, threshold=threshold, median=median)
        hypotheses[uri] = activity_to_annotation(activity.numpy(), frame_rate=frame_rate, uri=uri)
        truth[uri] = turns_to_annotation(turns, uri=uri)
        durations[uri] = duration
    parts = diarization_error_rate(truth, hypotheses, durations=durations)
    percent = 100.0 / parts["total"]
    return {
        "DER": 100.0 * parts["der"],
        "missed": parts["missed"] * percent,
        "false_alarm": parts["false_alarm"] * percent,
        "confusion": parts["confusion"] * percent,
        "speech_seconds": parts["total"],
    }


class DiarizationBrain(ProbeBrain):
    """A frame probe (one logit per speaker and frame) trained with permutation-invariant BCE
    on RTTM activity; dev and test scored by DER (:func:`score_diarization`), which picks the
    checkpoint and, with ``lr_schedule: newbob``, anneals the learning rate.

    Arguments
    ---------
    references : mapping of recording id → (turns, duration)
        Every utterance of every split: its RTTM turns and duration (seconds).
    frame_rate : float
        The features' frames per second.
    num_speakers : int
        Speakers per mixture (the probe's outputs).
    threshold : float
        Activity threshold on the sigmoid (SUPERB: 0.5).
    median : int
        Median filter width in frames (odd; 1: none).
    **kwargs
        Those of :class:`ProbeBrain`.
    """

    select_key = "DER"
    anneal_key = "DER"

    def __init__(
        self,
        *,
        references: Mapping[str, tuple[Turns, float]],
        frame_rate: float,
        num_speakers: int,
        threshold: float = 0.5,
        median: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.references = references
        self.frame_rate = frame_rate
        self.num_speakers = num_speakers
        self.threshold = threshold
        self.median = median

    def batch_labels(self, ids: Sequence[str], frames: int) -> torch.Tensor:
        """Reference activity (batch, frames, num_speakers) of a batch's mixtures."""
        return torch.stack(
            [
                mixture_labels(
                    self.references[utt_id][0],
                    num_frames=frames,
                    frame_rate=self.frame_rate,
                    num_speakers=self.num_speakers,
                )
                for utt_id in ids
            ]
        )

    def compute_forward(self, batch, stage):
        """Activity logits (batch, frames, speakers) and relative lengths."""
        feats, lens = self.features(batch)
        return self.modules.probe(feats, lens), lens

    def compute_objectives(self, predictions, batch, stage):
        """PIT BCE over the valid frames; outside training, keep each mixture's logits."""
        logits, lens = predictions
        lengths = wav_lens_to_lengths(lens, logits.shape[1])  # (batch,) valid frames
        labels = self.batch_labels(batch.id, logits.shape[1]).to(self.device)
        loss, _ = pit_bce_loss(logits, labels, lengths)
        if stage != sb.Stage.TRAIN:
            for utt_id, scores, length in zip(batch.id, logits.detach().cpu(), lengths.tolist()):
                self.logits[utt_id] = scores[:length]
        return loss

    def reset_metrics(self, stage):
        """Forget the collected logits."""
        self.logits = {}

    def summarize_metrics(self, stage):
        """DER and its parts, in percent of the reference speech."""
        return score_diarization(
            self.logits,
            self.references,
            frame_rate=self.frame_rate,
            threshold=self.threshold,
            median=self.median,
        )


@KINDS.register("diarization")
def run_diarization(task: Task, hparams: dict, run_opts: dict, *, manifests: dict) -> dict:
    """Frame probe over the speakers of each mixture's RTTM (column ``task.label``); test DER.

    Yaml keys: ``num_speakers`` (the probe's outputs), ``threshold`` and ``median_filter``
    (test-time activity, :func:`score_diarization`).
    """
    featurizer = pipeline.build_featurizer(hparams)
    datasets = pipeline.feature_datasets(
        manifests, featurizer, hparams, device=run_opts.get("device", "cpu")
    )
    frame_rate = SAMPLE_RATE / featurizer.downsample_rate
    references = {
        row["ID"]: (mixture_turns(row[task.label], row["ID"]), float(row["duration"]))
        for split in SPLITS
        for row in read_manifest(manifests[split])
    }
    pipeline.set_outputs(datasets, hparams)
    probe = pipeline.make_probe(hparams, featurizer, hparams["num_speakers"])
    brain = DiarizationBrain(
        references=references,
        frame_rate=frame_rate,
        num_speakers=hparams["num_speakers"],
        threshold=hparams["threshold"],
        median=hparams["median_filter"],
        featurizer=featurizer,
        probe=probe,
        hparams=hparams,
        run_opts=run_opts,
    )
    brain.train_probe(datasets)
    stats = brain.test(datasets["test"])
    return {
        "value": stats["DER"],
        "layer_weights": featurizer.layer_weights(),
        "test_stats": stats,
        "frame_rate": frame_rate,
    }
