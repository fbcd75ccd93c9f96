"""SpeechBrain ``Brain`` classes that train a probe on an encoder's features, one per task kind.

- :class:`CTCBrain`: CTC probe, greedy decoding, WER or PER (``ErrorRateStats``);
  :class:`SlotFillingBrain`: the same on slot-tagged texts, slot-type F1 and slot-value CER.
- :class:`ClassificationBrain`: utterance probe, accuracy.
- :class:`VerificationBrain`: utterance probe trained to classify the training speakers;
  validated and tested by cosine scoring of its embeddings over trials, EER (SpeechBrain's
  ``EER``).

All take the featurizer, the probe, the task's yaml and run options; features come from the
layer cache (``layers`` items) or from audio (``sig`` items), see ``pipeline.feature_datasets``.
Yaml keys used: ``number_of_epochs``, ``batch_size``, ``lr``, ``encoder_lr``, ``lr_schedule``,
``annealing_factor``, ``checkpoint_selection``, ``save_folder``, ``train_log``, ``output_folder``,
``freeze_encoder``, ``cache_features``.
"""

import speechbrain as sb
import torch
from speechbrain.nnet.losses import ctc_loss
from speechbrain.nnet.schedulers import NewBobScheduler
from speechbrain.utils.epoch_loop import EpochCounter
from speechbrain.utils.metric_stats import ErrorRateStats
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_ext.downstream.featurizer import SSLFeaturizer
from speechbrain_ext.downstream.metrics import (
    accuracy,
    add_word_errors,
    all_pair_trials,
    cosine_eer,
    ctc_greedy_texts,
)
from speechbrain_ext.downstream.tokenizers import BLANK_INDEX
from speechbrain_ext.ssl.checkpoints import AtomicCheckpointer
from speechbrain_ext.superb.metrics import slot_type_f1, slot_value_cer

LR_SCHEDULES = ("newbob", "linear")
CHECKPOINT_SELECTIONS = ("dev", "last")


def linear_decay(lr: float, epoch: int, number_of_epochs: int) -> float:
    """Learning rate of (1-based) ``epoch`` when it decays linearly from ``lr`` (epoch 1) to
    ``lr / number_of_epochs`` (the last epoch).

    Example
    -------
    >>> [linear_decay(1.0, epoch, 4) for epoch in range(1, 5)]
    [1.0, 0.75, 0.5, 0.25]
    """
    return lr * (1.0 - (min(epoch, number_of_epochs) - 1) / number_of_epochs)


def uses_cache(hparams: dict) -> bool:
    """Whether features come from the cache (frozen encoder and ``cache_features``)."""
    return bool(hparams["freeze_encoder"] and hparams["cache_features"])


class ProbeBrain(sb.Brain):
    """A probe (and the layer weights) trained on an encoder's features.

    Subclasses implement ``compute_forward``/``compute_objectives`` and the metric hooks
    :meth:`reset_metrics` and :meth:`summarize_metrics`, and set ``select_key`` (the dev metric
    that picks the checkpoint), ``select_max`` and ``anneal_key`` (the dev value, lower is
    better, that anneals the learning rate).

    Two yaml keys choose how training is steered:

    - ``lr_schedule``: ``newbob`` multiplies the learning rate by ``annealing_factor`` whenever
      the dev value stops improving (SpeechBrain's ``NewBobScheduler``, as in the MP3S recipes);
      ``linear`` decays it from ``lr`` to ``lr / number_of_epochs`` over the epochs
      (:func:`linear_decay`), independent of the dev set.
    - ``checkpoint_selection``: ``dev`` tests the checkpoint with the best dev metric; ``last``
      tests the final epoch. On the built-in corpus the classification and verification dev
      sets hold 3 to 15 utterances, too few to pick a checkpoint (or to anneal on): ``dev``
      then picks noise, e.g. an epoch-1 probe that happened to label 2 of 3 dev utterances
      right.

    Arguments
    ---------
    featurizer : SSLFeaturizer
        The encoder and its layer weighting.
    probe : torch.nn.Module
        The downstream probe.
    hparams : dict
        The task's yaml.
    run_opts : dict
        SpeechBrain run options.
    """

    select_key = "loss"
    select_max = False
    anneal_key = "loss"  # dev value (lower is better) driving the learning-rate annealing
    eval_loss = True  # whether dev/test stats report the loss
    # checkpoint_selection "last": save every this many epochs (and after the last one) only;
    # cheap probes train for many short epochs, where saving each one would dominate the time.
    last_checkpoint_every = 10

    def __init__(self, *, featurizer: SSLFeaturizer, probe, hparams: dict, run_opts: dict):
        self.cached = uses_cache(hparams)
        for key, valid in (
            ("lr_schedule", LR_SCHEDULES),
            ("checkpoint_selection", CHECKPOINT_SELECTIONS),
        ):
            if hparams[key] not in valid:
                raise ValueError(f"unknown {key} {hparams[key]!r}; valid: {', '.join(valid)}")
        self.select_last = hparams["checkpoint_selection"] == "last"
        self.epoch_counter = EpochCounter(limit=hparams["number_of_epochs"])
        self.annealer = NewBobScheduler(
            initial_value=hparams["lr"], annealing_factor=hparams["annealing_factor"]
        )
        recoverables = {
            "probe": probe,
            "layer_weights": featurizer.weighted_sum,
            "counter": self.epoch_counter,
            "annealer": self.annealer,
        }
        if not featurizer.freeze:
            recoverables["encoder"] = featurizer.encoder
        self.train_logger = FileTrainLogger(save_file=hparams["train_log"])
        self.train_stats, self.test_stats = {}, {}
        super().__init__(
            modules={"featurizer": featurizer, "probe": probe},
            opt_class=torch.optim.Adam,
            hparams=hparams,
            run_opts=dict(run_opts),
            checkpointer=AtomicCheckpointer(hparams["save_folder"], recoverables=recoverables),
        )

    def init_optimizers(self):
        """Adam over the probe and layer weights (``lr``), plus the encoder when fine-tuned
        (``encoder_lr``).
        """
        featurizer = self.modules.featurizer
        head = list(self.modules.probe.parameters()) + list(featurizer.weighted_sum.parameters())
        groups = [{"params": head, "lr": self.hparams.lr}]
        if not featurizer.freeze:
            groups.append(
                {"params": featurizer.encoder.parameters(), "lr": self.hparams.encoder_lr}
            )
        self.optimizer = torch.optim.Adam(groups)
        self.optimizers_dict = {"optimizer": self.optimizer}
        self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def features(self, batch):
        """Weighted-sum features of a batch and their relative lengths.

        Returns
        -------
        feats : torch.Tensor
            (batch, frames, hidden_size).
        lens : torch.Tensor
            (batch,) relative lengths.
        """
        featurizer = self.modules.featurizer
        if self.cached:
            layers, lens = batch.layers  # (batch, frames, layers, dim)
            return featurizer.mix(layers.to(self.device)), lens.to(self.device)
        wavs, lens = batch.sig  # (batch, samples)
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        return featurizer(wavs, lens), lens

    def reset_metrics(self, stage):
        """Start collecting the metrics of a stage (subclasses)."""

    def summarize_metrics(self, stage) -> dict:
        """The metrics of a finished stage, ``{name: value}`` (subclasses)."""
        return {}

    def on_stage_start(self, stage, epoch=None):
        """Reset the metric trackers."""
        self.reset_metrics(stage)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal the learning rate on the dev loss, keep the best checkpoint."""
        stats = {"loss": stage_loss} if stage == sb.Stage.TRAIN or self.eval_loss else {}
        if stage != sb.Stage.TRAIN:
            stats.update(self.summarize_metrics(stage))
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
        elif stage == sb.Stage.VALID:
            if self.hparams.lr_schedule == "linear":
                old_lr = linear_decay(self.hparams.lr, epoch, self.hparams.number_of_epochs)
                new_lr = linear_decay(self.hparams.lr, epoch + 1, self.hparams.number_of_epochs)
            else:
                old_lr, new_lr = self.annealer(stats[self.anneal_key])
            for group in self.optimizer.param_groups:
                group["lr"] *= new_lr / old_lr
            self.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": new_lr},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            if self.select_last:  # only the latest checkpoint, for resuming and testing
                last = epoch >= self.hparams.number_of_epochs
                if last or epoch % self.last_checkpoint_every == 0:
                    self.checkpointer.save_and_keep_only(meta=stats)
            else:
                keys = {"max_keys" if self.select_max else "min_keys": [self.select_key]}
                self.checkpointer.save_and_keep_only(meta=stats, **keys)
        else:
            self.test_stats = stats
            self.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.epoch_counter.current}, test_stats=stats
            )

    def selection_keys(self) -> dict:
        """``min_key``/``max_key`` argument picking the best dev checkpoint; none (the latest
        checkpoint) with ``checkpoint_selection: last``.
        """
        if self.select_last:
            return {}
        return {("max_key" if self.select_max else "min_key"): self.select_key}

    def train_probe(self, datasets: dict):
        """Fit on ``train`` with ``dev`` for checkpoint selection."""
        batch_size = self.hparams.batch_size
        # A last batch of one utterance breaks the BatchNorm after pooling (x-vector, ECAPA);
        # shuffling means every utterance is still seen.
        drop_last = len(datasets["train"]) > batch_size
        self.fit(
            self.epoch_counter,
            datasets["train"],
            datasets["dev"],
            train_loader_kwargs={"batch_size": batch_size, "shuffle": True, "drop_last": drop_last},
            valid_loader_kwargs={"batch_size": batch_size},
        )

    def test(self, dataset) -> dict:
        """Evaluate the best checkpoint on ``dataset``; returns the test stats."""
        self.evaluate(
            dataset, test_loader_kwargs={"batch_size": self.hparams.batch_size},
            **self.selection_keys(),
        )  # fmt: skip
        return dict(self.test_stats)

    @torch.no_grad()
    def embed_dataset(self, dataset) -> dict:
        """Utterance embeddings of the best checkpoint's probe: id → (embedding_size,)."""
        self.checkpointer.recover_if_possible(**self.selection_keys())
        self.modules.eval()
        loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=self.hparams.batch_size)
        embeddings = {}
        for batch in loader:
            feats, lens = self.features(batch)
            for utt_id, emb in zip(batch.id, self.modules.probe.embed(feats, lens).cpu()):
                embeddings[utt_id] = emb
        return embeddings


class CTCBrain(ProbeBrain):
    """A CTC probe (``linear_ctc``, ``bilstm_ctc``) scored by the error rate of its greedy
    transcripts over space-separated units: words (``WER``, with the character error rate
    ``CER`` beside it) or phonemes (``PER``: the transcripts are space-separated phonemes). The
    error rate picks the checkpoint and is the result.

    Arguments
    ---------
    tokenizer : CharTokenizer, PhonemeTokenizer or BPETokenizer
        Maps transcripts (the batch's ``label`` column) to the targets (``tokens``) and back.
    label : str
        The transcript column (``wrd``; ``phn`` for phonemes).
    metric : str
        Name of the error rate (``WER`` or ``PER``); ``WER`` adds the ``CER``.
    **kwargs
        Those of :class:`ProbeBrain`.
    """

    select_key = "WER"

    def __init__(self, *, tokenizer, label: str = "wrd", metric: str = "WER", **kwargs):
        super().__init__(**kwargs)
        self.tokenizer, self.label, self.metric = tokenizer, label, metric
        if not self.select_max:  # an error rate (subclasses may select on another metric)
            self.select_key = metric

    def compute_forward(self, batch, stage):
        """Log-probabilities (batch, frames, tokens) and relative lengths."""
        feats, lens = self.features(batch)
        return self.modules.probe(feats, lens), lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; greedy transcripts feed the metrics outside training."""
        log_probs, lens = predictions
        tokens, token_lens = batch.tokens
        tokens, token_lens = tokens.to(self.device), token_lens.to(self.device)
        loss = ctc_loss(log_probs, tokens, lens, token_lens, blank_index=BLANK_INDEX)
        if stage != sb.Stage.TRAIN:
            hyps = ctc_greedy_texts(log_probs.detach().cpu(), lens.cpu(), self.tokenizer)
            self.add_transcripts(batch.id, hyps, getattr(batch, self.label))
        return loss

    def add_transcripts(self, ids, hyps, refs):
        """Collect a batch's hypothesis and reference texts."""
        add_word_errors(self.wer, ids, hyps, refs)
        self.cer.append(ids, predict=[list(h) for h in hyps], target=[list(r) for r in refs])

    def reset_metrics(self, stage):
        """New error-rate trackers."""
        self.wer, self.cer = ErrorRateStats(), ErrorRateStats()

    def summarize_metrics(self, stage):
        """The error rate (and the CER beside a WER) in percent; the test alignments go to
        ``<output_folder>/<metric>.txt``.
        """
        if stage == sb.Stage.TEST:
            path = f"{self.hparams.output_folder}/{self.metric.lower()}.txt"
            with open(path, "w", encoding="utf-8") as out:
                self.wer.write_stats(out)
        stats = {self.metric: self.wer.summarize("WER")}
        if self.metric == "WER":
            stats["CER"] = self.cer.summarize("WER")
        return stats


class SlotFillingBrain(CTCBrain):
    """SUPERB slot filling: a CTC probe over characters and whole slot tags
    (:class:`~speechbrain_ext.downstream.tokenizers.SlotTokenizer`) on tagged transcripts
    (``B-city TORONTO E-city``), scored by the slot-type F1 (percent; picks the checkpoint) with
    the slot-value CER (percent) and the WER of the tagged texts beside it
    (:func:`speechbrain_ext.superb.metrics.slot_type_f1`, ``slot_value_cer``).
    """

    select_key = "slot_type_f1"
    select_max = True

    def add_transcripts(self, ids, hyps, refs):
        """Also keep the texts for the slot metrics."""
        super().add_transcripts(ids, hyps, refs)
        self.hyps.extend(hyps)
        self.refs.extend(refs)

    def reset_metrics(self, stage):
        """New trackers and no texts."""
        super().reset_metrics(stage)
        self.hyps, self.refs = [], []

    def summarize_metrics(self, stage):
        """``slot_type_f1``, ``slot_value_cer`` and ``WER``, in percent."""
        return {
            "slot_type_f1": 100.0 * slot_type_f1(self.hyps, self.refs),
            "slot_value_cer": 100.0 * slot_value_cer(self.hyps, self.refs),
            "WER": self.wer.summarize("WER"),
        }


class ClassificationBrain(ProbeBrain):
    """An utterance probe scored by accuracy; batches carry ``target`` class indices."""

    select_key = "accuracy"
    select_max = True

    def compute_forward(self, batch, stage):
        """Class scores (batch, classes)."""
        feats, lens = self.features(batch)
        return self.modules.probe(feats, lens)

    def compute_objectives(self, predictions, batch, stage):
        """The probe's loss (cross-entropy, or AAM for a cosine classifier)."""
        targets = batch.target.data.to(self.device).squeeze(-1)  # (batch,)
        if stage != sb.Stage.TRAIN:
            self.predictions.extend(predictions.argmax(dim=-1).tolist())
            self.targets.extend(targets.tolist())
        return self.modules.probe.loss(predictions, targets)

    def reset_metrics(self, stage):
        """Forget the collected predictions."""
        self.predictions, self.targets = [], []

    def summarize_metrics(self, stage):
        """Accuracy in percent."""
        return {"accuracy": accuracy(self.predictions, self.targets)}


class VerificationBrain(ProbeBrain):
    """Speaker verification: the probe learns to classify the training speakers (batches carry
    ``target``); dev batches carry ``spk_id`` and are scored, like the test, by the EER of cosine
    scoring (all dev utterance pairs), which picks the checkpoint and anneals the learning rate.
    Dev speakers may be the training speakers (other utterances) or new ones.

    Arguments
    ---------
    max_dev_utterances : int
        At most this many dev utterances (an evenly spaced subset) make the dev pairs.
    **kwargs
        Those of :class:`ProbeBrain`.
    """

    select_key = "EER"
    anneal_key = "EER"
    eval_loss = False  # no loss outside training: embeddings are scored

    def __init__(self, *, max_dev_utterances: int = 200, **kwargs):
        super().__init__(**kwargs)
        self.max_dev_utterances = max_dev_utterances

    def compute_forward(self, batch, stage):
        """Class scores when training, embeddings (batch, embedding_size) otherwise."""
        feats, lens = self.features(batch)
        if stage == sb.Stage.TRAIN:
            return self.modules.probe(feats, lens)
        return self.modules.probe.embed(feats, lens)

    def compute_objectives(self, predictions, batch, stage):
        """The probe's loss when training; otherwise collect embeddings (zero loss)."""
        if stage == sb.Stage.TRAIN:
            targets = batch.target.data.to(self.device).squeeze(-1)  # (batch,)
            return self.modules.probe.loss(predictions, targets)
        self.embeddings.update(zip(batch.id, predictions.detach().cpu()))
        self.speakers.update(zip(batch.id, batch.spk_id))
        return torch.zeros((), device=self.device)

    def reset_metrics(self, stage):
        """Forget the collected embeddings."""
        self.embeddings, self.speakers = {}, {}

    def summarize_metrics(self, stage):
        """EER (percent) over all pairs of the collected utterances."""
        trials = all_pair_trials(self.speakers, max_utterances=self.max_dev_utterances)
        return {"EER": cosine_eer(self.embeddings, trials)}

    def verify(self, dataset, trials) -> float:
        """EER (percent) of cosine scoring of the best checkpoint's embeddings.

        Arguments
        ---------
        dataset : DynamicItemDataset
            Holds every utterance the trials name.
        trials : iterable of (label, enrol_id, test_id)
            Verification trials (label 1: same speaker).
        """
        eer = cosine_eer(self.embed_dataset(dataset), trials)
        self.test_stats = {"EER": eer}
        self.train_logger.log_stats(
            stats_meta={"Epoch loaded": self.epoch_counter.current}, test_stats=self.test_stats
        )
        return eer
