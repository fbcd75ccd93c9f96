"""The HuBERT objective: span masking, cosine-similarity prediction of cluster labels.

HuBERT (Hsu et al., 2021; fairseq and torchaudio) masks spans of the encoder input, replaces
them by a learned embedding and predicts, for masked frames, the k-means cluster of each frame:

- masking as HuBERT defines ``mask_prob``: an utterance of ``T`` frames gets
  ``int(mask_prob · T / mask_length + U[0, 1))`` spans (at least ``min_masks``) of
  ``mask_length`` frames, starting at distinct random frames; spans may overlap, so
  p = 0.8 and span 10 mask about half of the frames;
- logits: cosine similarity between a projection of each frame (``final_dim`` 256) and a
  learned embedding of each class, divided by a temperature (0.1);
- cross-entropy over all classes on masked frames, plus an optional weight on unmasked ones.

Why not SpeechBrain's ``speechbrain.lobes.models.wav2vec.compute_mask``: it draws from NumPy's
global random state (no reproducible evaluation masks), gives every utterance of a batch the
span count of the shortest one and tops masks up to a fixed count, so masks depend on the batch.
Here each utterance's mask depends on its own length and the generator only.

Example
-------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> mask = compute_hubert_mask(torch.tensor([500, 200]), max_len=500, mask_prob=0.8,
...                            mask_length=10, generator=g)
>>> mask.shape, bool(mask[1, 200:].any())
(torch.Size([2, 500]), False)
>>> 0.35 < float(mask[0].float().mean()) < 0.65  # about half of the frames
True
>>> head = CosineClassifier(d_model=16, num_classes=5, final_dim=8)
>>> logits = head(torch.randn(2, 7, 16))
>>> logits.shape, bool(logits.abs().max() <= 1 / head.temperature + 1e-4)
(torch.Size([2, 7, 5]), True)
"""

import torch
import torch.nn.functional as F
from torch import nn


def compute_hubert_mask(
    lengths: torch.Tensor,
    *,
    max_len: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """HuBERT's span mask (fairseq's ``compute_mask_indices``, static lengths), per utterance.

    Arguments
    ---------
    lengths : torch.Tensor
        Valid frames per utterance (batch,).
    max_len : int
        Frames of the padded batch.
    mask_prob : float
        HuBERT's p in [0, 1]: ``p · T / mask_length`` spans per utterance.
    mask_length : int
        Frames per span.
    min_masks : int
        Fewest spans per utterance (when it is long enough).
    generator : torch.Generator, optional
        Random source (on ``lengths.device``).

    Returns
    -------
    torch.Tensor
        Bool (batch, max_len), True on masked frames, never on padding.

    Example
    -------
    >>> mask = compute_hubert_mask(torch.tensor([30]), max_len=30, mask_prob=0.5,
    ...                            mask_length=5, min_masks=1,
    ...                            generator=torch.Generator().manual_seed(1))
    >>> int(mask.sum()) % 5 == 0 or bool(mask.any())  # whole spans, possibly overlapping
    True
    """
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if mask_length < 1:
        raise ValueError(f"mask_length must be positive, got {mask_length}")
    if min_masks < 0:
        raise ValueError(f"min_masks must be >= 0, got {min_masks}")
    device = lengths.device
    lengths = lengths.long()
    batch = lengths.shape[0]
    starts_available = (lengths - mask_length + 1).clamp(min=0)  # (batch,) valid start frames
    jitter = torch.rand(batch, generator=generator, device=device)
    num_spans = torch.floor(mask_prob * lengths / mask_length + jitter).long()
    num_spans = torch.minimum(num_spans.clamp(min=min_masks), starts_available)
    positions = max(max_len - mask_length + 1, 1)
    scores = torch.rand(batch, positions, generator=generator, device=device)
    index = torch.arange(positions, device=device)
    scores = scores.masked_fill(index.unsqueeze(0) >= starts_available.unsqueeze(1), 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    starts = (rank < num_spans.unsqueeze(1)).float()  # (batch, positions)
    # A frame is masked when a span starts within the mask_length frames up to it.
    starts = F.pad(starts, (mask_length - 1, max_len - positions))
    covered = F.conv1d(starts.unsqueeze(1), torch.ones(1, 1, mask_length, device=device))
    return covered.squeeze(1)[:, :max_len] > 0.5


class CosineClassifier(nn.Module):
    """HuBERT's prediction head: cosine similarity of projected frames to class embeddings.

    Arguments
    ---------
    d_model : int
        Width of the encoder output.
    num_classes : int
        Number of k-means clusters to predict.
    final_dim : int
        Width of the projection and of each class embedding (256 in HuBERT).
    temperature : float
        Logits are cosine similarities divided by it (0.1 in HuBERT).
    """

    def __init__(
        self, *, d_model: int, num_classes: int, final_dim: int = 256, temperature: float = 0.1
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.projection = nn.Linear(d_model, final_dim)
        self.label_embeddings = nn.Parameter(torch.empty(num_classes, final_dim).uniform_())
        self.temperature = temperature
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, time, num_classes) of ``x`` (batch, time, d_model), in fp32."""
        projected = F.normalize(self.projection(x).float(), dim=-1)
        embeddings = F.normalize(self.label_embeddings.float(), dim=-1)
        return projected @ embeddings.T / self.temperature


def hubert_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor,
    *,
    unmasked_weight: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy on masked frames, plus ``unmasked_weight`` × that on unmasked valid ones.

    ``logits`` (batch, time, classes); ``targets``, ``mask`` and ``valid`` (batch, time).
    A batch without masked frames gives a zero that still depends on ``logits``.

    Example
    -------
    >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])
    >>> targets = torch.tensor([[0, 0, 1]])
    >>> mask, valid = torch.tensor([[True, False, False]]), torch.tensor([[True, True, False]])
    >>> round(float(hubert_loss(logits, targets, mask, valid)), 4)  # -log softmax(2, 0)[0]
    0.1269
    >>> round(float(hubert_loss(logits, targets, mask, valid, unmasked_weight=1.0)), 4)
    2.2539
    """
    loss = logits.sum() * 0.0
    if bool(mask.any()):
        loss = loss + F.cross_entropy(logits[mask].float(), targets[mask])
    unmasked = valid & ~mask
    if unmasked_weight > 0 and bool(unmasked.any()):
        loss = loss + unmasked_weight * F.cross_entropy(logits[unmasked].float(), targets[unmasked])
    return loss
