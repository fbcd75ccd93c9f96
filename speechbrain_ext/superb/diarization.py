"""SUPERB speaker diarization: LSTM head, permutation-invariant BCE, frame labels from RTTM.

As s3prl's ``diarization`` downstream (SUPERB SD): a single-layer LSTM (512 units) over the
(weighted-sum) features, a linear layer to one logit per speaker and frame, and a binary
cross-entropy that takes, per utterance, the speaker order of the labels that fits best
(permutation-invariant training, PIT): for labels ``y`` (frames, S) and logits ``z``,

    loss(utt) = min over permutations π of Σ_valid frames mean_s BCE(z[t, s], y[t, π(s)])
    loss      = Σ_utt loss(utt) / Σ_utt valid frames

Example
-------
>>> import torch
>>> head = DiarizationHead(input_size=8, num_speakers=2, hidden_size=16)
>>> logits = head(torch.randn(3, 20, 8), torch.tensor([20, 15, 7]))
>>> logits.shape
torch.Size([3, 20, 2])
>>> labels = torch.randint(0, 2, (3, 20, 2)).float()
>>> loss, perms = pit_bce_loss(logits, labels, torch.tensor([20, 15, 7]))
>>> loss.dim(), perms.shape
(0, torch.Size([3, 2]))
"""

import itertools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from speechbrain_ext.nnet.rnn import lstm_valid_frames


class DiarizationHead(nn.Module):
    """Frames → per-speaker activity logits (an LSTM and a linear layer).

    Arguments
    ---------
    input_size : int
        Feature width.
    num_speakers : int
        Speakers per recording (2 in SUPERB's LibriMix and the built-in corpus).
    hidden_size : int
        LSTM width (s3prl: 512).
    num_layers : int
        LSTM layers (s3prl: 1); 0 gives a linear head.
    bidirectional : bool
        s3prl's head is unidirectional.
    """

    def __init__(
        self,
        *,
        input_size: int,
        num_speakers: int = 2,
        hidden_size: int = 512,
        num_layers: int = 1,
        bidirectional: bool = False,
    ):
        super().__init__()
        self.num_speakers = num_speakers
        self.rnn = None
        width = input_size
        if num_layers > 0:
            self.rnn = nn.LSTM(
                input_size,
                hidden_size,
                num_layers=num_layers,
                batch_first=True,
                bidirectional=bidirectional,
            )
            width = hidden_size * (2 if bidirectional else 1)
        self.linear = nn.Linear(width, num_speakers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, frames, input_size) → (batch, frames, num_speakers) logits.

        ``lengths`` (batch,) valid frames: padded frames never reach valid ones (the LSTM runs
        as if packed, :func:`~speechbrain_ext.nnet.rnn.lstm_valid_frames`) and their logits
        are 0.
        """
        x = x.float()
        if self.rnn is not None:
            if lengths is None:
                x, _ = self.rnn(x)
            else:  # as if packed, without packing's slow CPU path
                x = lstm_valid_frames(self.rnn, x, lengths)
        logits = self.linear(x)
        if lengths is not None:
            logits = logits.masked_fill(~_frame_mask(lengths, logits.shape[1])[..., None], 0.0)
        return logits


def _frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.arange(frames, device=lengths.device) < lengths[:, None]  # (batch, frames)


def pit_bce_loss(
    logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant BCE, and the best label permutation of each utterance.

    Arguments
    ---------
    logits : torch.Tensor
        (batch, frames, speakers) activity logits.
    labels : torch.Tensor
        (batch, frames, speakers) 0/1 activity, in any speaker order.
    lengths : torch.Tensor, optional
        (batch,) valid frames; padded frames are ignored.

    Returns
    -------
    (loss, perms)
        ``loss`` the scalar of the module docstring; ``perms`` (batch, speakers) the label
        column order that reached each utterance's minimum (``labels[b][:, perms[b]]``
        aligns with ``logits[b]``).
    """
    if logits.shape != labels.shape or logits.dim() != 3:
        raise ValueError(
            f"logits and labels must both be (batch, frames, speakers), got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    batch, frames, speakers = logits.shape
    if lengths is None:
        lengths = torch.full((batch,), frames, device=logits.device)
    lengths = lengths.to(logits.device)
    mask = _frame_mask(lengths, frames).to(logits.dtype)  # (batch, frames)
    perms = torch.tensor(list(itertools.permutations(range(speakers))), device=logits.device)
    permuted = labels.float()[:, :, perms]  # (batch, frames, perms, speakers)
    bce = F.binary_cross_entropy_with_logits(
        logits.float().unsqueeze(2).expand_as(permuted), permuted, reduction="none"
    )
    per_perm = (bce.mean(-1) * mask[..., None]).sum(1)  # (batch, perms)
    best, index = per_perm.min(1)
    return best.sum() / lengths.sum().clamp_min(1), perms[index]


def frame_labels(
    turns: Sequence[tuple[float, float, str]],
    *,
    num_frames: int,
    frame_rate: float,
    speakers: Sequence[str] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """(num_frames, speakers) 0/1 activity of (start, end, speaker) turns, and the speakers.

    Frame ``k`` (covering ``[k, k + 1) / frame_rate``) is active when its centre lies inside a
    turn. Speakers are in order of first appearance unless given.

    Example
    -------
    >>> labels, who = frame_labels([(0.0, 0.25, "a"), (0.15, 0.4, "b")], num_frames=5,
    ...                            frame_rate=10.0)
    >>> labels.T.tolist(), who
    ([[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0, 0.0]], ['a', 'b'])
    """
    if speakers is None:
        speakers = list(dict.fromkeys(speaker for _, _, speaker in turns))
    column = {speaker: k for k, speaker in enumerate(speakers)}
    labels = torch.zeros(num_frames, len(speakers))
    centres = (torch.arange(num_frames) + 0.5) / frame_rate
    for start, end, speaker in turns:
        labels[(centres >= start) & (centres < end), column[speaker]] = 1.0
    return labels, list(speakers)


def logits_to_activity(
    logits: torch.Tensor, *, threshold: float = 0.5, median: int = 1
) -> torch.Tensor:
    """0/1 activity (frames, speakers) from logits: sigmoid, threshold, median filter.

    s3prl's scoring tries thresholds 0.3–0.7 and median widths 1 and 11 (``make_rttm.py``).

    Example
    -------
    >>> logits_to_activity(torch.tensor([[3.0], [-3.0], [3.0], [3.0], [-3.0]]), median=3).T
    tensor([[1, 1, 1, 1, 0]])
    """
    if median < 1 or median % 2 == 0:
        raise ValueError(f"median must be a positive odd width, got {median}")
    active = (torch.sigmoid(logits.float()) > threshold).to(torch.int64)  # (frames, speakers)
    if median == 1:
        return active
    half = median // 2
    padded = F.pad(active.T[None].float(), (half, half), mode="replicate")[0]
    windows = padded.unfold(-1, median, 1)  # (speakers, frames, median)
    return windows.median(-1).values.T.to(torch.int64)
