"""Checks and mask helpers shared by the token mixers (private: not a mixer)."""

import torch


def head_dim(d_model: int, nhead: int) -> int:
    """Size of one head; raises ``ValueError`` unless ``nhead`` divides ``d_model``."""
    if d_model < 1 or nhead < 1:
        raise ValueError(f"d_model and nhead must be positive, got {d_model} and {nhead}")
    if d_model % nhead:
        raise ValueError(f"d_model={d_model} is not divisible by nhead={nhead}")
    return d_model // nhead


def check_input(
    x: torch.Tensor, key_padding_mask: torch.Tensor | None, d_model: int, mixer: str
) -> None:
    """Raise a clear error unless ``x`` is (batch, time, d_model), the mask bool (batch, time)."""
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(
            f"{mixer} expects x of shape (batch, time, {d_model}), got {tuple(x.shape)}"
        )
    if key_padding_mask is None:
        return
    if key_padding_mask.dtype != torch.bool:
        raise TypeError(
            f"{mixer}: key_padding_mask must be a bool tensor (True = padded), "
            f"got {key_padding_mask.dtype}"
        )
    if key_padding_mask.shape != x.shape[:2]:
        raise ValueError(
            f"{mixer}: key_padding_mask shape {tuple(key_padding_mask.shape)} does not match "
            f"x's (batch, time) {tuple(x.shape[:2])}"
        )


def prepare_input(
    x: torch.Tensor, key_padding_mask: torch.Tensor | None, d_model: int, mixer: str
) -> torch.Tensor:
    """Check ``x`` and the mask (:func:`check_input`); return ``x`` with padded frames zeroed.

    Zeroing is a ``masked_fill`` (a select, not a product: ``NaN * 0`` is NaN), so whatever the
    padded frames hold, NaN and inf included, neither the forward pass nor the gradient of a
    valid output can see it. Every mixer starts with this call.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [float("nan")]]])
    >>> prepare_input(x, torch.tensor([[False, True]]), 1, "demo").flatten().tolist()
    [1.0, 0.0]
    """
    check_input(x, key_padding_mask, d_model, mixer)
    if key_padding_mask is None:
        return x
    return x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)


def empty_output(x: torch.Tensor) -> torch.Tensor:
    """What every mixer returns for a zero-length input ``x`` (batch, 0, d_model): an empty
    tensor of the same shape and dtype, still attached to ``x``'s graph.

    Example
    -------
    >>> empty_output(torch.randn(2, 0, 8)).shape
    torch.Size([2, 0, 8])
    """
    return x.clone()


def ignored_keys(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Keys to leave out of attention: the padded ones, except in rows with no valid key.

    An utterance whose every frame is padded would otherwise give softmax rows of only
    ``-inf`` (NaN); there it attends to its own (padded) frames instead, which influences nothing
    valid, and the mixer zeroes those outputs anyway.
    """
    return key_padding_mask & ~key_padding_mask.all(dim=1, keepdim=True)
