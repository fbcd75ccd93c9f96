"""Downstream probes on top of the weighted layer sum, by yaml name.

Two families:

- **sequence probes** (``kind = "ctc"``): ``forward(feats, lens) -> (batch, time, num_outputs)``
  log-probabilities for CTC: ``linear_ctc``, ``bilstm_ctc``, ``contextnet_ctc`` (a small
  ContextNet: depthwise-separable convolutions, squeeze-and-excitation, residuals, Swish).
- **frame probes** (``kind = "diarization"``): ``forward(feats, lens) -> (batch, time,
  num_outputs)`` activity logits, one per speaker: ``lstm_pit`` (SUPERB SD's LSTM head, trained
  with permutation-invariant BCE, :mod:`speechbrain_ext.superb.diarization`).
- **utterance probes** (``kind = "utterance"``): ``embed(feats, lens) -> (batch, embedding_size)``
  and ``forward(feats, lens) -> (batch, num_outputs)`` class scores, ``loss(scores, targets)``:
  ``meanpool_linear``, ``bilstm_pool``, ``xvector`` and ``ecapa`` (SpeechBrain's ``Xvector`` and
  ``ECAPA_TDNN`` lobes). With ``classifier="cosine"`` the scores are cosine similarities to
  class prototypes trained with a margin (``margin_loss``: ``aam``, the additive angular margin
  of AAM-softmax, or ``am``, the additive cosine margin of AM-softmax), as for speaker
  verification; with ``classifier="linear"`` they are logits trained with cross-entropy.

``feats`` is (batch, time, input_size), ``lens`` SpeechBrain relative lengths (batch,).

Example
-------
>>> import torch
>>> probe = build_probe("meanpool_linear", input_size=8, num_outputs=3)
>>> feats, lens = torch.randn(2, 10, 8), torch.tensor([1.0, 0.6])
>>> probe(feats, lens).shape, probe.kind
(torch.Size([2, 3]), 'utterance')
>>> build_probe("bilstm_ctc", input_size=8, num_outputs=5, hidden_size=4)(feats, lens).shape
torch.Size([2, 10, 5])
>>> list_probes()  # doctest: +NORMALIZE_WHITESPACE
['bilstm_ctc', 'bilstm_pool', 'contextnet_ctc', 'ecapa', 'linear_ctc', 'lstm_pit',
 'meanpool_linear', 'xvector']
"""

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.lobes.models.ECAPA_TDNN import Classifier as CosineClassifier
from speechbrain.lobes.models.Xvector import Xvector
from speechbrain.nnet.losses import AdditiveAngularMargin, AngularMargin, LogSoftmaxWrapper
from speechbrain.nnet.RNN import LSTM
from torch import nn

from speechbrain_ext.nnet.masking import wav_lens_to_lengths, wav_lens_to_padding_mask
from speechbrain_ext.nnet.rnn import lstm_valid_frames
from speechbrain_ext.registry import Registry
from speechbrain_ext.superb.diarization import DiarizationHead

PROBES = Registry("probe")
CLASSIFIERS = ("linear", "cosine")
MARGIN_LOSSES = {"aam": AdditiveAngularMargin, "am": AngularMargin}


def list_probes() -> list[str]:
    """Names of every registered probe."""
    return PROBES.names()


def build_probe(name: str, *, input_size: int, num_outputs: int, **options) -> nn.Module:
    """Build the probe registered as ``name`` (``KeyError`` lists the valid names)."""
    return PROBES.build(name, input_size=input_size, num_outputs=num_outputs, **options)


def masked_mean(x: torch.Tensor, lens: torch.Tensor | None) -> torch.Tensor:
    """Mean over the valid frames of (batch, time, dim) → (batch, dim).

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> masked_mean(x, torch.tensor([2 / 3]))
    tensor([[2.]])
    """
    if lens is None:
        return x.mean(dim=1)
    valid = (~wav_lens_to_padding_mask(lens.to(x.device), x.shape[1])).unsqueeze(-1)
    valid = valid.to(x.dtype)  # (batch, time, 1)
    return (x * valid).sum(dim=1) / valid.sum(dim=1)


class _BiLSTM(nn.Module):
    """SpeechBrain's LSTM, bidirectional; output 2 × hidden.

    Its forward is :func:`~speechbrain_ext.nnet.rnn.lstm_valid_frames` instead of SpeechBrain's
    packed one: the same values on the valid frames (zeros on padded ones), 4–5 times faster to
    train on the CPU at the built-in probes' sizes (``benchmarks/probe_lstm.py``). Valid frames
    are ``round(lens × time)``, as for every mask of this package (SpeechBrain's packing
    truncates, which drops a frame whenever the product falls just below an integer).

    Example
    -------
    >>> torch.manual_seed(0) and None
    >>> lstm = _BiLSTM(input_size=3, hidden_size=4, num_layers=2, dropout=0.0).eval()
    >>> x, lens = torch.randn(2, 6, 3), torch.tensor([1.0, 0.5])
    >>> packed, _ = lstm.lstm(x, lengths=lens)  # SpeechBrain's forward (exact lengths here)
    >>> bool(torch.allclose(lstm(x, lens)[:, : packed.shape[1]], packed, atol=1e-6))
    True
    """

    def __init__(self, *, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.lstm = LSTM(
            hidden_size=hidden_size,
            input_size=input_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=True,
        )
        self.output_size = 2 * hidden_size

    def forward(self, x: torch.Tensor, lens: torch.Tensor | None) -> torch.Tensor:
        """(batch, time, input_size) → (batch, time, 2 × hidden), padded frames zero."""
        if lens is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        else:
            lengths = wav_lens_to_lengths(lens, x.shape[1])
        return lstm_valid_frames(self.lstm.rnn, x, lengths)


# ----------------------------------------------------------------------------- CTC probes


@PROBES.register("linear_ctc")
class LinearCTC(nn.Module):
    """A linear layer to CTC tokens (SUPERB's PR probe).

    Arguments
    ---------
    input_size : int
        Feature dimension.
    num_outputs : int
        Number of CTC tokens, blank included.
    dropout : float
        Dropout on the input features.
    """

    kind = "ctc"

    def __init__(self, *, input_size: int, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(input_size, num_outputs)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (batch, time, num_outputs)."""
        return F.log_softmax(self.output(self.dropout(feats)), dim=-1)


@PROBES.register("bilstm_ctc")
class BiLSTMCTC(nn.Module):
    """A bidirectional LSTM stack then a linear layer to CTC tokens (MP3S / SUPERB ASR probe).

    Arguments
    ---------
    input_size : int
        Feature dimension.
    num_outputs : int
        Number of CTC tokens, blank included.
    hidden_size : int
        LSTM size per direction (MP3S uses 1024; small values suit the built-in corpus).
    num_layers : int
        Number of BiLSTM layers.
    dropout : float
        Dropout on the input and between LSTM layers.
    """

    kind = "ctc"

    def __init__(
        self,
        *,
        input_size: int,
        num_outputs: int,
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.rnn = _BiLSTM(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout
        )
        self.output = nn.Linear(self.rnn.output_size, num_outputs)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (batch, time, num_outputs)."""
        hidden = self.rnn(self.dropout(feats), lens)  # (batch, time, 2 * hidden)
        return F.log_softmax(self.output(self.dropout(hidden)), dim=-1)


class _SqueezeExcite(nn.Module):
    """Squeeze-and-excitation over time: channel gates from the mean of the valid frames."""

    def __init__(self, *, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, time, channels) gated by (batch, 1, channels)."""
        if key_padding_mask is None:
            pooled = x.mean(dim=1)
        else:
            valid = (~key_padding_mask).sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
            pooled = x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0).sum(dim=1) / valid
        gate = torch.sigmoid(self.excite(F.silu(self.squeeze(pooled))))  # (batch, channels)
        return x * gate.unsqueeze(1)


class ContextNetBlock(nn.Module):
    """One ContextNet block: ``num_convs`` depthwise-separable convolutions (each with
    LayerNorm and Swish), squeeze-and-excitation, and a pointwise residual branch.

    Padded frames are zeroed before every convolution and left out of the SE mean, so the valid
    frames of a padded batch equal those of each utterance run alone. LayerNorm (over channels)
    stands in for the paper's BatchNorm: it keeps that property in training too, and it does
    not depend on the batch size (a probe on the built-in corpus trains on batches of 8).

    Arguments
    ---------
    input_size : int
        Input channels.
    channels : int
        Output channels.
    num_convs : int
        Convolutions in the block (the paper: 5).
    kernel_size : int
        Odd width of the depthwise convolutions (stride 1, "same" padding).
    se_reduction : int
        Channel reduction of the squeeze-and-excitation bottleneck.
    dropout : float
        Dropout after each convolution.

    Example
    -------
    >>> block = ContextNetBlock(input_size=8, channels=16, num_convs=2, kernel_size=3)
    >>> block(torch.randn(2, 10, 8)).shape
    torch.Size([2, 10, 16])
    """

    def __init__(
        self,
        *,
        input_size: int,
        channels: int,
        num_convs: int = 2,
        kernel_size: int = 5,
        se_reduction: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.depthwise = nn.ModuleList()
        self.pointwise = nn.ModuleList()
        self.norms = nn.ModuleList()
        for k in range(num_convs):
            width = input_size if k == 0 else channels
            self.depthwise.append(
                nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, groups=width)
            )
            self.pointwise.append(nn.Linear(width, channels))
            self.norms.append(nn.LayerNorm(channels))
        self.dropout = nn.Dropout(dropout)
        self.se = _SqueezeExcite(channels=channels, reduction=se_reduction)
        self.residual = nn.Sequential(nn.Linear(input_size, channels), nn.LayerNorm(channels))

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """(batch, time, input_size) → (batch, time, channels)."""
        if key_padding_mask is not None:
            x = x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        h = x
        for depthwise, pointwise, norm in zip(self.depthwise, self.pointwise, self.norms):
            if key_padding_mask is not None:
                h = h.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
            h = depthwise(h.transpose(1, 2)).transpose(1, 2)  # (batch, time, width)
            h = self.dropout(F.silu(norm(pointwise(h))))  # (batch, time, channels)
        return F.silu(self.se(h, key_padding_mask) + self.residual(x))


@PROBES.register("contextnet_ctc")
class ContextNetCTC(nn.Module):
    """A small ContextNet encoder then a linear layer to CTC tokens (MP3S LibriSpeech's second
    probe). No striding: the probe runs at the features' frame rate.

    Arguments
    ---------
    input_size : int
        Feature dimension.
    num_outputs : int
        Number of CTC tokens, blank included.
    channels : int
        Width of every block (MP3S-scale ContextNets use 256 to 640).
    num_blocks : int
        Number of :class:`ContextNetBlock`.
    num_convs : int
        Convolutions per block.
    kernel_size : int
        Depthwise convolution width.
    se_reduction : int
        Squeeze-and-excitation channel reduction.
    dropout : float
        Dropout on the input features and inside the blocks.

    Example
    -------
    >>> probe = ContextNetCTC(input_size=8, num_outputs=5, channels=16, num_blocks=2)
    >>> probe(torch.randn(2, 10, 8), torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 10, 5])
    """

    kind = "ctc"

    def __init__(
        self,
        *,
        input_size: int,
        num_outputs: int,
        channels: int = 128,
        num_blocks: int = 3,
        num_convs: int = 2,
        kernel_size: int = 5,
        se_reduction: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            ContextNetBlock(
                input_size=input_size if k == 0 else channels,
                channels=channels,
                num_convs=num_convs,
                kernel_size=kernel_size,
                se_reduction=se_reduction,
                dropout=dropout,
            )
            for k in range(num_blocks)
        )
        self.output = nn.Linear(channels, num_outputs)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (batch, time, num_outputs)."""
        mask = (
            None
            if lens is None
            else wav_lens_to_padding_mask(lens.to(feats.device), feats.shape[1])
        )
        h = self.dropout(feats)
        for block in self.blocks:
            h = block(h, mask)  # (batch, time, channels)
        return F.log_softmax(self.output(h), dim=-1)


# ---------------------------------------------------------------------------- frame probes


@PROBES.register("lstm_pit")
class LSTMPIT(nn.Module):
    """SUPERB SD's head behind the probe interface: :class:`DiarizationHead` (an LSTM and a
    linear layer to one activity logit per speaker) on relative lengths. It is trained with
    ``pit_bce_loss`` by :class:`~speechbrain_ext.downstream.diarization.DiarizationBrain`.

    Arguments
    ---------
    input_size : int
        Feature dimension.
    num_outputs : int
        Speakers per recording.
    hidden_size, num_layers, bidirectional
        Those of :class:`DiarizationHead` (s3prl: 512, 1, unidirectional).
    dropout : float
        Dropout on the input features.

    Example
    -------
    >>> probe = LSTMPIT(input_size=8, num_outputs=2, hidden_size=4)
    >>> probe(torch.randn(2, 10, 8), torch.tensor([1.0, 0.6]))[1, 6:].abs().sum().item()
    0.0
    """

    kind = "diarization"

    def __init__(
        self,
        *,
        input_size: int,
        num_outputs: int,
        hidden_size: int = 512,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.head = DiarizationHead(
            input_size=input_size,
            num_speakers=num_outputs,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
        )

    def forward(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """Activity logits (batch, time, num_outputs); 0 on padded frames."""
        lengths = None if lens is None else wav_lens_to_lengths(lens, feats.shape[1])
        return self.head(self.dropout(feats), lengths)


# ------------------------------------------------------------------------ utterance probes


class UtteranceProbe(nn.Module):
    """An utterance embedding network followed by a classifier.

    Subclasses define ``self.embedding`` (feats, lens) -> (batch, embedding_size).

    Arguments
    ---------
    embedding_size : int
        Size of the embedding the classifier reads.
    num_outputs : int
        Number of classes.
    classifier : str
        ``"linear"`` (logits, cross-entropy) or ``"cosine"`` (cosine scores, AAM-softmax).
    margin, scale : float
        Margin and scale (``classifier="cosine"`` only).
    margin_loss : str
        ``"aam"``: AAM-softmax, ``cos(θ + m)`` (SpeechBrain's ``AdditiveAngularMargin``, the
        MP3S recipes); ``"am"``: AM-softmax, ``cos θ − m`` (SpeechBrain's ``AngularMargin``,
        SUPERB's ASV).
    """

    kind = "utterance"

    def __init__(
        self,
        *,
        embedding_size: int,
        num_outputs: int,
        classifier: str = "linear",
        margin: float = 0.2,
        scale: float = 30.0,
        margin_loss: str = "aam",
    ):
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {classifier!r}; valid: {', '.join(CLASSIFIERS)}")
        self.embedding_size = embedding_size
        self.classifier_type = classifier
        if classifier == "linear":
            self.classifier = nn.Linear(embedding_size, num_outputs)
            self.criterion = None
        else:
            self.classifier = CosineClassifier(embedding_size, out_neurons=num_outputs)
            if margin_loss not in MARGIN_LOSSES:
                raise ValueError(
                    f"unknown margin_loss {margin_loss!r}; valid: {', '.join(MARGIN_LOSSES)}"
                )
            margin_class = MARGIN_LOSSES[margin_loss]
            self.criterion = LogSoftmaxWrapper(margin_class(margin=margin, scale=scale))

    def embed(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embeddings (batch, embedding_size)."""
        raise NotImplementedError

    def forward(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """Class scores (batch, num_outputs): logits, or cosines for the cosine classifier."""
        emb = self.embed(feats, lens)  # (batch, embedding_size)
        if self.classifier_type == "linear":
            return self.classifier(emb)
        return self.classifier(emb.unsqueeze(1)).squeeze(1)

    def loss(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of ``scores`` (batch, classes) against integer ``targets`` (batch,)."""
        if self.criterion is None:
            return F.cross_entropy(scores, targets)
        return self.criterion(scores.unsqueeze(1), targets.unsqueeze(1))


@PROBES.register("meanpool_linear")
class MeanPoolLinear(UtteranceProbe):
    """Mean over valid frames, then the classifier (SUPERB's KS/ER/IC/SID probe).

    Arguments
    ---------
    input_size : int
        Feature dimension (= the embedding size).
    num_outputs : int
        Number of classes.
    dropout : float
        Dropout on the pooled vector.
    **classifier_options
        ``classifier``, ``margin``, ``scale``, ``margin_loss`` of :class:`UtteranceProbe`.
    """

    def __init__(
        self, *, input_size: int, num_outputs: int, dropout: float = 0.0, **classifier_options
    ):
        super().__init__(embedding_size=input_size, num_outputs=num_outputs, **classifier_options)
        self.dropout = nn.Dropout(dropout)

    def embed(self, feats, lens=None):
        """Masked mean of the features, (batch, input_size)."""
        return self.dropout(masked_mean(feats, lens))


@PROBES.register("bilstm_pool")
class BiLSTMPool(UtteranceProbe):
    """BiLSTM, mean over valid frames, then the classifier (MP3S SLURP's second probe).

    Arguments
    ---------
    input_size : int
        Feature dimension.
    num_outputs : int
        Number of classes.
    hidden_size : int
        LSTM size per direction; the embedding is 2 × hidden_size.
    num_layers : int
        Number of BiLSTM layers.
    dropout : float
        Dropout on the input and between layers.
    **classifier_options
        ``classifier``, ``margin``, ``scale``, ``margin_loss`` of :class:`UtteranceProbe`.
    """

    def __init__(
        self,
        *,
        input_size: int,
        num_outputs: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.1,
        **classifier_options,
    ):
        super().__init__(
            embedding_size=2 * hidden_size, num_outputs=num_outputs, **classifier_options
        )
        self.dropout = nn.Dropout(dropout)
        self.rnn = _BiLSTM(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout
        )

    def embed(self, feats, lens=None):
        """Masked mean of the BiLSTM outputs, (batch, 2 * hidden_size)."""
        return masked_mean(self.rnn(self.dropout(feats), lens), lens)


@PROBES.register("xvector")
class XvectorProbe(UtteranceProbe):
    """SpeechBrain's x-vector TDNN (statistics pooling) as the embedding network.

    Arguments
    ---------
    input_size : int
        Feature dimension.
    num_outputs : int
        Number of classes (training speakers for verification).
    channels : list of int
        TDNN channels of the 5 blocks (SpeechBrain default [512, 512, 512, 512, 1500]).
    embedding_size : int
        X-vector size.
    **classifier_options
        ``classifier``, ``margin``, ``scale``, ``margin_loss`` of :class:`UtteranceProbe`.
    """

    def __init__(
        self,
        *,
        input_size: int,
        num_outputs: int,
        channels=(512, 512, 512, 512, 1500),
        embedding_size: int = 512,
        **classifier_options,
    ):
        super().__init__(
            embedding_size=embedding_size, num_outputs=num_outputs, **classifier_options
        )
        self.xvector = Xvector(
            tdnn_blocks=len(channels),
            tdnn_channels=list(channels),
            tdnn_kernel_sizes=[5, 3, 3, 1, 1][: len(channels)],
            tdnn_dilations=[1, 2, 3, 1, 1][: len(channels)],
            lin_neurons=embedding_size,
            in_channels=input_size,
        )

    def embed(self, feats, lens=None):
        """X-vectors (batch, embedding_size)."""
        return self.xvector(feats, lens).squeeze(1)


@PROBES.register("ecapa")
class ECAPAProbe(UtteranceProbe):
    """SpeechBrain's ECAPA-TDNN (attentive statistics pooling) as the embedding network.

    Arguments
    ---------
    input_size : int
        Feature dimension.
    num_outputs : int
        Number of classes.
    channels : list of int
        Channels of the 5 blocks (SpeechBrain default [512, 512, 512, 512, 1536]); the middle
        ones must be divisible by ``res2net_scale``.
    embedding_size : int
        Embedding size.
    attention_channels, se_channels, res2net_scale : int
        ECAPA sizes (defaults 128, 128, 8).
    **classifier_options
        ``classifier``, ``margin``, ``scale``, ``margin_loss`` of :class:`UtteranceProbe`.
    """

    def __init__(
        self,
        *,
        input_size: int,
        num_outputs: int,
        channels=(512, 512, 512, 512, 1536),
        embedding_size: int = 192,
        attention_channels: int = 128,
        se_channels: int = 128,
        res2net_scale: int = 8,
        **classifier_options,
    ):
        super().__init__(
            embedding_size=embedding_size, num_outputs=num_outputs, **classifier_options
        )
        if len(channels) != 5:
            raise ValueError(f"ecapa needs 5 channel sizes, got {list(channels)}")
        bad = [c for c in channels[1:-1] if c % res2net_scale]
        if bad:
            raise ValueError(f"ecapa channels {bad} are not divisible by res2net_scale")
        self.ecapa = ECAPA_TDNN(
            input_size,
            lin_neurons=embedding_size,
            channels=list(channels),
            attention_channels=attention_channels,
            se_channels=se_channels,
            res2net_scale=res2net_scale,
        )

    def embed(self, feats, lens=None):
        """ECAPA embeddings (batch, embedding_size)."""
        return self.ecapa(feats, lens).squeeze(1)
