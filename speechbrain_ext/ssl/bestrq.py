"""The BEST-RQ objective: frozen random-projection targets, span masking, masked prediction.

BEST-RQ (Chiu et al., 2022) predicts, for masked frames only, the index of the
nearest codeword of a frozen random codebook to a frozen random projection of
the (unmasked) input features. Following Study B and SpeechBrain's recipe:

- targets come from 80-dim normalised fbank stacked ×4 (320 dims, 40 ms);
- the projection ``P`` (320×16, Xavier) and codebook (8192×16, l2-normalised
  rows) are frozen; a frame's target is the codeword nearest to
  ``normalize(x · P)``, normalised **over the feature dimension**;
- spans of ``mask_length`` fbank frames start at ``mask_length``-aligned
  positions; ``mask_prob × frames`` spans are drawn per utterance (≈ 60 %
  masked for 0.15 and 4, as in SpeechBrain), masked frames are replaced by
  N(0, 0.1²) noise;
- cross-entropy on masked frames only.

Example
-------
>>> import torch
>>> objective = BestRQ(input_dim=8, stack=4, codebook_size=32, codebook_dim=4)
>>> feats = torch.randn(2, 40, 8)  # (batch, fbank frames, n_mels)
>>> lengths = torch.tensor([40, 24])
>>> masked, mask = objective.mask(feats, lengths)
>>> masked.shape, mask.shape  # mask at the stacked (40 ms) rate
(torch.Size([2, 40, 8]), torch.Size([2, 10]))
>>> bool(mask[1, 6:].any())  # never on padded frames
False
>>> targets = objective.targets(feats)  # (batch, stacked frames)
>>> targets.shape, targets.dtype
(torch.Size([2, 10]), torch.int64)
>>> logits = torch.randn(2, 10, 32)
>>> loss = objective.loss(logits, targets, mask)
>>> bool(torch.isfinite(loss))
True
"""

import torch
import torch.nn.functional as F
from speechbrain.nnet.quantisers import RandomProjectionQuantizer as _SBRandomProjectionQuantizer
from torch import nn


class RandomProjectionQuantizer(_SBRandomProjectionQuantizer):
    """SpeechBrain's frozen random-projection quantizer, seeded and memory-lean.

    SpeechBrain 1.1.2 already normalises the projection over the feature
    dimension (``dim=2`` of a (batch, time, dim) input), which is right; but its
    ``forward`` materialises every frame-to-codeword difference, a
    (batch, codebook_size, time, codebook_dim) tensor (512 KB per frame for 8192
    codes of 16 dims: gigabytes for a training batch). As both the projected
    frame and the codewords are unit vectors, the nearest codeword is the one
    with the largest dot product, which this class computes with one matmul.
    It keeps SpeechBrain's buffers (``P``, ``CB``) so checkpoints interchange,
    and draws them from a private generator seeded with ``seed`` so that every
    run and every DDP rank gets the same targets.

    Arguments
    ---------
    input_dim : int
        Dimension of the (stacked) input features.
    codebook_dim : int
        Dimension of the projection and of each codeword.
    codebook_size : int
        Number of codewords (the number of classes to predict).
    seed : int
        Seed of the projection and codebook.

    Example
    -------
    >>> quantizer = RandomProjectionQuantizer(input_dim=20, codebook_dim=4, codebook_size=16)
    >>> x = torch.randn(3, 7, 20)
    >>> codes = quantizer(x)
    >>> codes.shape
    torch.Size([3, 7])
    >>> bool((codes == _SBRandomProjectionQuantizer.forward(quantizer, x)).all())
    True
    >>> bool((codes == RandomProjectionQuantizer(
    ...     input_dim=20, codebook_dim=4, codebook_size=16)(x)).all())
    True
    """

    def __init__(
        self, *, input_dim: int, codebook_dim: int = 16, codebook_size: int = 8192, seed: int = 0
    ):
        for name, value in (
            ("input_dim", input_dim),
            ("codebook_dim", codebook_dim),
            ("codebook_size", codebook_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        super().__init__(input_dim, codebook_dim, codebook_size)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.P, generator=generator)
            self.CB.copy_(
                F.normalize(torch.randn(codebook_size, codebook_dim, generator=generator), dim=-1)
            )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Codeword index (batch, time) of each frame of ``x`` (batch, time, input_dim)."""
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"quantizer expects {self.input_dim} input features, got shape {tuple(x.shape)}"
            )
        with torch.autocast(x.device.type, enabled=False):
            projected = F.normalize(x.float() @ self.P, dim=-1)  # (batch, time, codebook_dim)
            return (projected @ self.CB.T).argmax(dim=-1)  # (batch, time)


def stack_frames(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Concatenate every ``factor`` consecutive frames (zero-padding the end).

    Arguments
    ---------
    x : torch.Tensor
        Features (batch, time, dim).
    factor : int
        Number of frames to stack.

    Returns
    -------
    torch.Tensor
        (batch, ceil(time / factor), dim · factor).

    Example
    -------
    >>> x = torch.arange(10.0).view(1, 5, 2)
    >>> stack_frames(x, 2)
    tensor([[[0., 1., 2., 3.],
             [4., 5., 6., 7.],
             [8., 9., 0., 0.]]])
    """
    batch, time, dim = x.shape
    x = pad_to_multiple(x, factor)
    return x.reshape(batch, x.shape[1] // factor, dim * factor)


def pad_to_multiple(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Zero-pad ``x`` (batch, time, dim) at the end of time to a multiple of ``factor``."""
    extra = -x.shape[1] % factor
    return F.pad(x, (0, 0, 0, extra)) if extra else x


def compute_span_mask(
    lengths: torch.Tensor,
    *,
    max_len: int,
    mask_prob: float,
    mask_length: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """BEST-RQ span mask, drawn per utterance over its valid frames.

    Spans of ``mask_length`` frames start at ``mask_length``-aligned positions
    (spans never overlap and never reach padding). Utterance ``b`` gets
    ``round_random(mask_prob · lengths[b])`` spans (at least one, at most every
    aligned position): ``mask_prob`` is the probability for a frame to start a
    span, as in SpeechBrain, so 0.15 and 4 mask about 60 % of the frames.

    Arguments
    ---------
    lengths : torch.Tensor
        Valid frames per utterance (batch,), integers.
    max_len : int
        Number of frames of the padded batch.
    mask_prob : float
        Spans per frame, in [0, 1].
    mask_length : int
        Frames per span.
    generator : torch.Generator, optional
        Random source (on ``lengths.device``), for reproducible masks.

    Returns
    -------
    torch.Tensor
        Bool mask (batch, max_len), True on masked frames.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> mask = compute_span_mask(torch.tensor([400, 200]), max_len=400, mask_prob=0.15,
    ...                          mask_length=4, generator=g)
    >>> mask.shape
    torch.Size([2, 400])
    >>> bool(0.5 < mask[0].float().mean() < 0.7), bool(mask[1, 200:].any())
    (True, False)
    >>> bool((mask.view(2, 100, 4).float().std(-1) == 0).all())  # aligned spans
    True
    """
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if mask_length < 1:
        raise ValueError(f"mask_length must be positive, got {mask_length}")
    device = lengths.device
    lengths = lengths.long()
    num_slots = -(-max_len // mask_length)
    valid_slots = torch.div(lengths, mask_length, rounding_mode="floor")  # (batch,)
    jitter = torch.rand(lengths.shape, generator=generator, device=device)
    num_spans = torch.floor(mask_prob * lengths + jitter).long()
    num_spans = torch.minimum(num_spans.clamp(min=1), valid_slots)  # (batch,)
    # A random order of each utterance's valid slots; the first num_spans are masked.
    scores = torch.rand(lengths.shape[0], num_slots, generator=generator, device=device)
    slots = torch.arange(num_slots, device=device)
    scores = scores.masked_fill(slots.unsqueeze(0) >= valid_slots.unsqueeze(1), 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # (batch, num_slots)
    slot_mask = rank < num_spans.unsqueeze(1)
    return slot_mask.repeat_interleave(mask_length, dim=1)[:, :max_len]


class BestRQ(nn.Module):
    """The BEST-RQ objective: masking with noise, frozen targets and masked loss.

    Arguments
    ---------
    input_dim : int
        Feature dimension per frame (80 fbank channels).
    stack : int
        Frames stacked into one target frame (4: 10 ms → 40 ms).
    codebook_size : int
        Number of codewords (classes).
    codebook_dim : int
        Dimension of the random projection and codewords.
    mask_prob : float
        Probability for a frame to start a masked span.
    mask_length : int
        Frames (at the feature rate) per masked span.
    noise_std : float
        Standard deviation of the noise replacing masked frames.
    seed : int
        Seed of the frozen quantizer.
    """

    def __init__(
        self,
        *,
        input_dim: int = 80,
        stack: int = 4,
        codebook_size: int = 8192,
        codebook_dim: int = 16,
        mask_prob: float = 0.15,
        mask_length: int = 4,
        noise_std: float = 0.1,
        seed: int = 0,
    ):
        super().__init__()
        if stack < 1:
            raise ValueError(f"stack must be positive, got {stack}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be non-negative, got {noise_std}")
        compute_span_mask(
            torch.ones(1, dtype=torch.long), max_len=1, mask_prob=mask_prob, mask_length=mask_length
        )  # validates the masking options
        self.stack = stack
        self.mask_prob = mask_prob
        self.mask_length = mask_length
        self.noise_std = noise_std
        self.quantizer = RandomProjectionQuantizer(
            input_dim=input_dim * stack,
            codebook_dim=codebook_dim,
            codebook_size=codebook_size,
            seed=seed,
        )

    @property
    def codebook_size(self) -> int:
        """Number of classes to predict."""
        return self.quantizer.cb_vocab

    def targets(self, feats: torch.Tensor) -> torch.Tensor:
        """Codeword index (batch, ceil(time / stack)) of each stacked frame of ``feats``."""
        return self.quantizer(stack_frames(feats, self.stack))

    def mask(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace random spans of ``feats`` by noise.

        Arguments
        ---------
        feats : torch.Tensor
            Normalised features (batch, time, dim).
        lengths : torch.Tensor
            Valid frames per utterance (batch,).
        generator : torch.Generator, optional
            Random source for the mask and the noise (on ``feats.device``).

        Returns
        -------
        masked : torch.Tensor
            ``feats`` with masked frames replaced by noise (batch, time, dim).
        mask : torch.Tensor
            Bool (batch, ceil(time / stack)), True on stacked frames that hold a
            masked frame: where the loss is taken.
        """
        batch, time, dim = feats.shape
        frame_mask = compute_span_mask(
            lengths.to(feats.device),
            max_len=time,
            mask_prob=self.mask_prob,
            mask_length=self.mask_length,
            generator=generator,
        )  # (batch, time)
        noise = torch.randn(feats.shape, generator=generator, device=feats.device)
        noise = (noise * self.noise_std).to(feats.dtype)
        masked = torch.where(frame_mask.unsqueeze(-1), noise, feats)
        stacked = pad_to_multiple(frame_mask.unsqueeze(-1), self.stack)  # (batch, T', 1)
        return masked, stacked.view(batch, -1, self.stack).any(dim=-1)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
        """Cross-entropy on masked frames (fp32), averaged over masked frames.

        ``logits`` (batch, time, codebook_size), ``targets`` and ``mask``
        (batch, time). A batch without masked frames gives a zero loss that still
        depends on ``logits`` (so DDP sees every parameter used).
        """
        selected = logits[mask].float()  # (masked frames, codebook_size)
        if selected.shape[0] == 0:
            return logits.float().sum() * 0.0
        return F.cross_entropy(selected, targets[mask])


def masked_accuracy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
    """Correct predictions and count over masked frames, as two 0-dim tensors.

    Example
    -------
    >>> logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    >>> targets = torch.tensor([[1, 1, 0]])
    >>> mask = torch.tensor([[True, True, False]])
    >>> correct, count = masked_accuracy(logits, targets, mask)
    >>> int(correct), int(count)
    (1, 2)
    """
    correct = (logits.argmax(dim=-1) == targets) & mask
    return correct.sum(), mask.sum()
