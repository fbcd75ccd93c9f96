"""Position encodings shared by the token mixers.

- :func:`sinusoidal_embedding`: absolute sinusoids (Vaswani et al.), used by HyperMixing.
- :func:`relative_sinusoidal_embedding`: sinusoids of the relative distance ``i - j`` for
  ``i - j = T-1, ..., -(T-1)``, the table Transformer-XL style attention projects and shifts.
- :func:`apply_rotary`: rotary position embedding (RoPE, Su et al.) on queries or keys.

Positions count from the first frame, so with right padding a padded batch and each
utterance alone see the same positions.

Example
-------
>>> import torch
>>> sinusoidal_embedding(torch.arange(3), 4)
tensor([[ 0.0000,  1.0000,  0.0000,  1.0000],
        [ 0.8415,  0.5403,  0.0100,  0.9999],
        [ 0.9093, -0.4161,  0.0200,  0.9998]])
>>> relative_sinusoidal_embedding(3, 4).shape  # distances 2, 1, 0, -1, -2
torch.Size([5, 4])
>>> q = torch.randn(1, 2, 5, 8)  # (batch, head, time, head_dim)
>>> apply_rotary(q).shape
torch.Size([1, 2, 5, 8])
"""

import math

import torch


def _inverse_frequencies(dim: int, *, base: float, device=None) -> torch.Tensor:
    """``base ** (-2i / dim)`` for ``i < dim / 2``, in float32."""
    exponent = torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim
    return torch.exp(-math.log(base) * exponent)


def sinusoidal_embedding(
    positions: torch.Tensor, dim: int, *, base: float = 10000.0, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Interleaved sinusoids of ``positions``: even channels sin, odd channels cos.

    Arguments
    ---------
    positions : torch.Tensor
        Positions (any shape, integer or float); may be negative.
    dim : int
        Embedding size, even.
    base : float
        Wavelength base of the lowest frequency.
    dtype : torch.dtype, optional
        Output dtype (computed in float32); defaults to float32.

    Returns
    -------
    torch.Tensor
        ``positions.shape + (dim,)``.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding size must be even, got {dim}")
    inv_freq = _inverse_frequencies(dim, base=base, device=positions.device)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (..., dim / 2)
    emb = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., dim)
    return emb.to(dtype or torch.float32)


def relative_sinusoidal_embedding(
    length: int, dim: int, *, device=None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Sinusoids of the relative distances ``r = i - j`` for ``r = length-1, ..., -(length-1)``.

    Row ``m`` encodes ``r = length - 1 - m``, the layout the Transformer-XL "relative shift"
    expects. Unlike SpeechBrain's ``RelPosEncXL`` (whose table is the same for ``r`` and ``-r``),
    the sign of the distance is kept: ``sin(r w)`` is odd in ``r``.

    Arguments
    ---------
    length : int
        Sequence length ``T``.
    dim : int
        Embedding size, even.
    device, dtype
        Placement of the result.

    Returns
    -------
    torch.Tensor
        (2 * length - 1, dim).
    """
    distances = torch.arange(length - 1, -length, -1, device=device)
    return sinusoidal_embedding(distances, dim, dtype=dtype)


def rotary_angles(
    length: int, dim: int, *, base: float = 10000.0, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of RoPE, each (length, dim) in float32 (rotate-half layout)."""
    if dim % 2:
        raise ValueError(f"rotary embedding needs an even head size, got {dim}")
    inv_freq = _inverse_frequencies(dim, base=base, device=device)
    angles = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(-1) * inv_freq
    angles = torch.cat([angles, angles], dim=-1)  # (length, dim)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, *, base: float = 10000.0) -> torch.Tensor:
    """Rotate ``x`` (..., time, dim) by its positions (rotate-half RoPE).

    The product of a rotated query at ``i`` and a rotated key at ``j`` depends on ``i - j``
    only, so attention with RoPE is a relative-position attention that still runs fused.

    Arguments
    ---------
    x : torch.Tensor
        (..., time, dim) with even ``dim``.
    base : float
        Wavelength base.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    cos, sin = rotary_angles(x.shape[-2], x.shape[-1], base=base, device=x.device)
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)
