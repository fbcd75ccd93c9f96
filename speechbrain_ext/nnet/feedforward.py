"""Position-wise feed-forward block and activations by yaml name.

Example
-------
>>> import torch
>>> ffn = FeedForward(d_model=16, d_ffn=64, activation="gelu")
>>> ffn(torch.randn(2, 5, 16)).shape
torch.Size([2, 5, 16])
>>> get_activation("swish")
SiLU()
"""

from collections.abc import Callable

import torch
from torch import nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def get_activation(activation: str | type[nn.Module] | nn.Module) -> nn.Module:
    """An activation module from a yaml name, a module class or a module.

    Arguments
    ---------
    activation : str, type or nn.Module
        One of ``gelu``, ``relu``, ``swish`` (= ``silu``), ``tanh``, ``identity``;
        or an ``nn.Module`` class (instantiated without arguments); or a module
        (returned as is).

    Returns
    -------
    nn.Module
        The activation.

    Example
    -------
    >>> get_activation("GELU")
    GELU(approximate='none')
    >>> get_activation(torch.nn.ReLU)
    ReLU()
    >>> get_activation("swishh")
    Traceback (most recent call last):
    ...
    ValueError: unknown activation 'swishh'; valid names: gelu, identity, relu, silu, swish, tanh
    """
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation()
    if isinstance(activation, str) and activation.lower() in _ACTIVATIONS:
        return _ACTIVATIONS[activation.lower()]()
    valid = ", ".join(sorted(_ACTIVATIONS))
    raise ValueError(f"unknown activation {activation!r}; valid names: {valid}")


class FeedForward(nn.Module):
    """Linear → activation → dropout → linear → dropout, applied to every frame.

    Arguments
    ---------
    d_model : int
        Input and output width.
    d_ffn : int
        Hidden width.
    activation : str or nn.Module class
        Hidden activation (see :func:`get_activation`).
    dropout : float
        Dropout after the activation and after the output projection.
    bias : bool
        Whether the linear layers have biases.
    device, dtype
        Passed to the parameters' constructors.

    Example
    -------
    >>> ffn = FeedForward(d_model=8, d_ffn=32, activation="swish", dropout=0.1)
    >>> sum(p.numel() for p in ffn.parameters())
    552
    """

    def __init__(
        self,
        *,
        d_model: int,
        d_ffn: int,
        activation: str | type[nn.Module] = "gelu",
        dropout: float = 0.0,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if d_model <= 0 or d_ffn <= 0:
            raise ValueError(f"d_model and d_ffn must be positive, got {d_model} and {d_ffn}")
        factory = {"device": device, "dtype": dtype}
        self.linear1 = nn.Linear(d_model, d_ffn, bias=bias, **factory)
        self.activation = get_activation(activation)
        self.linear2 = nn.Linear(d_ffn, d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` (batch, time, d_model) to the same shape."""
        x = self.dropout(self.activation(self.linear1(x)))  # (batch, time, d_ffn)
        return self.dropout(self.linear2(x))  # (batch, time, d_model)
