"""Bidirectional Mamba token mixer (Gu & Dao, 2023), as the MHSA substitute of Study B.

One direction (:class:`MambaBlock`) has the parameter layout of ``mamba_ssm``'s ``Mamba``::

    [x, z] = in_proj(u)                        # (batch, time, 2 · d_inner)
    x = SiLU(causal depthwise conv1d(x))       # kernel d_conv
    [dt, B, C] = x_proj(x);  Δ = softplus(dt_proj(dt))
    y = selective_scan(x, Δ, A = -exp(A_log), B, C, D)
    out = out_proj(y ⊙ SiLU(z))

The mixer (:class:`BidirectionalMamba`, registered as ``"mamba"``) adds a second, independent
block run over the reversed sequence: ``M_f(u) + flip(M_b(flip(u)))``. With a padding mask the
flip is per utterance (its valid frames reversed), so the backward direction starts at the
utterance's own end; padded inputs are zeroed, and both directions are
causal in their own time order, so padded frames never reach valid ones (not through the
depthwise convolution either).

The scan runs on ``mamba_ssm``'s fused CUDA kernel (and ``causal_conv1d``'s, when installed) for
CUDA inputs when they import; otherwise on
:func:`speechbrain_ext.nnet.selective_scan.selective_scan`: our fused C++ kernel for CPU
tensors (built on first use, see :mod:`speechbrain_ext.nnet.cpu_kernels`), else the exact chunked
pure-PyTorch scan. On these
paths the backward direction is never flipped: its convolution looks ahead, its scan runs from the
last frame, and the inputs of padded frames are zeroed, so each utterance's backward scan starts at
its own end (:meth:`MambaBlock.forward` with ``reverse=True``); the CUDA-kernel path reverses each
row's valid frames with a gather instead.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> mixer = build_mixer("mamba", d_model=16, d_state=4)
>>> x = torch.randn(2, 9, 16)
>>> mask = torch.tensor([[False] * 9, [False] * 5 + [True] * 4])
>>> y = mixer(x, key_padding_mask=mask)
>>> y.shape
torch.Size([2, 9, 16])
>>> alone = mixer(x[1:, :5])
>>> torch.allclose(y[1:, :5], alone, atol=1e-5)
True
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.convolution import conv1d_as_channels_last_2d
from speechbrain_ext.nnet.masking import lengths_to_padding_mask, zero_padded
from speechbrain_ext.nnet.mixers import MIXERS
from speechbrain_ext.nnet.mixers._common import empty_output, prepare_input
from speechbrain_ext.nnet.selective_scan import (
    DEFAULT_CHUNK_SIZE,
    mamba_ssm_selective_scan,
    selective_scan,
)

try:  # fused causal depthwise convolution, optional (the scan kernel works without it)
    from causal_conv1d import causal_conv1d_fn
except Exception:  # ImportError, or a broken CUDA build
    causal_conv1d_fn = None

USE_KERNELS = ("auto", True, False)


def kernels_available() -> bool:
    """Whether ``mamba_ssm``'s fused selective-scan kernel imported."""
    return mamba_ssm_selective_scan is not None


class MambaBlock(nn.Module):
    """One causal Mamba block (left to right), laid out as ``mamba_ssm.modules.mamba_simple``.

    Arguments
    ---------
    d_model : int
        Input and output width.
    d_state : int
        State size N per channel.
    d_conv : int
        Kernel size of the causal depthwise convolution.
    expand : int
        ``d_inner = expand · d_model``.
    dt_rank : int or "auto"
        Rank of the Δ projection; ``"auto"`` is ``ceil(d_model / 16)``.
    dt_min, dt_max, dt_init_floor : float
        Δ is initialised log-uniform in [dt_min, dt_max], at least dt_init_floor.
    use_kernels : "auto" or bool
        ``"auto"``: use ``mamba_ssm``'s CUDA kernel for CUDA inputs when it imports. ``True``:
        the same, but fail at construction when it does not import. ``False``: always the
        pure-PyTorch scan. CPU inputs always take our fused C++ scan (or, where it does not
        build, the pure-PyTorch one).
    chunk_size : int
        Frames per chunk of the pure-PyTorch scan (and between the C++ scan's saved states).
    device, dtype
        Placement of the parameters (``A_log`` and ``D`` stay fp32, as in ``mamba_ssm``).

    Example
    -------
    >>> import torch
    >>> block = MambaBlock(d_model=8, d_state=4)
    >>> u = torch.randn(1, 6, 8)
    >>> y = block(u)
    >>> torch.allclose(block(u[:, :4]), y[:, :4], atol=1e-6)  # causal
    True
    """

    def __init__(
        self,
        *,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        use_kernels: str | bool = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        device=None,
        dtype=None,
    ):
        super().__init__()
        for name, value in (
            ("d_model", d_model),
            ("d_state", d_state),
            ("d_conv", d_conv),
            ("expand", expand),
            ("chunk_size", chunk_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"mamba: {name} must be a positive int, got {value!r}")
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"mamba: dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        if use_kernels not in USE_KERNELS:
            raise ValueError(
                f"mamba: use_kernels must be one of {USE_KERNELS}, got {use_kernels!r}"
            )
        if use_kernels is True and not kernels_available():
            raise ImportError(
                "mamba: use_kernels=True but mamba_ssm.ops.selective_scan_interface does not "
                "import (install the 'mamba' extra on a CUDA machine, or use 'auto')"
            )
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank
        self.use_kernels = use_kernels
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=True,
            **factory,
        )
        self.x_proj = nn.Linear(self.d_inner, dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(dt_rank, self.d_inner, bias=True, **factory)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state, device=device))
        self.D = nn.Parameter(torch.empty(self.d_inner, device=device))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False, **factory)
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_ssm_parameters()

    def reset_ssm_parameters(self) -> None:
        """Mamba's initialisation of Δ (``dt_proj``), ``A_log = log(1..N)`` and ``D = 1``."""
        dt_min, dt_max, floor = self._dt_range
        std = self.dt_rank**-0.5
        with torch.no_grad():
            nn.init.uniform_(self.dt_proj.weight, -std, std)
            log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
            dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=floor)
            inv_softplus = dt + torch.log(-torch.expm1(-dt))
            self.dt_proj.bias.copy_(inv_softplus)
            states = torch.arange(1, self.d_state + 1, dtype=torch.float32)
            self.A_log.copy_(torch.log(states).repeat(self.d_inner, 1))
            self.D.fill_(1.0)
        self.dt_proj.bias._no_reinit = True

    def uses_kernels(self, u: torch.Tensor) -> bool:
        """Whether ``forward(u)`` runs on the fused CUDA kernel."""
        return self.use_kernels is not False and u.is_cuda and kernels_available()

    def forward(
        self,
        u: torch.Tensor,
        *,
        reverse: bool = False,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Map ``u`` (batch, time, d_model) to (batch, time, d_model), causally.

        ``reverse=True`` runs the block right to left: each utterance's valid frames (all
        frames without ``key_padding_mask``, True = padded) give what ``flip(block(flip(u)))``
        gives for that utterance alone. On the pure-PyTorch path nothing is flipped: the
        convolution looks ahead instead of back and the scan runs from the last frame, with the
        inputs of padded frames zeroed so that each utterance's scan starts at its own end.
        """
        u = zero_padded(u, key_padding_mask)
        if self.uses_kernels(u):
            if not reverse:
                return self._forward_kernels(u)
            if key_padding_mask is None:
                return self._forward_kernels(u.flip(1)).flip(1)
            index = reverse_valid_index(key_padding_mask)[..., None]
            reversed_out = self._forward_kernels(u.gather(1, index.expand_as(u)))
            return reversed_out.gather(1, index.expand_as(reversed_out))
        x, z = self.in_proj(u).chunk(2, dim=-1)  # each (batch, time, d_inner), views
        x = F.silu(self._convolve(x, reverse=reverse, key_padding_mask=key_padding_mask))
        if reverse and key_padding_mask is not None:
            suffix_padding_lengths(key_padding_mask)  # padding after the valid frames only
            x = zero_padded(x, key_padding_mask)  # the state stays 0 until the utterance's end
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        # Δ = softplus(dt_proj(dt)): the bias and the softplus are applied inside the scan
        delta_bias = self.dt_proj.bias
        if type(self.dt_proj) is nn.Linear:
            delta = F.linear(dt, self.dt_proj.weight)  # (batch, time, d_inner)
        else:  # a replaced layer (a quantized one...) runs its own forward, bias included
            delta, delta_bias = self.dt_proj(dt), None
        A = -torch.exp(self.A_log.float())  # (d_inner, d_state)
        y = selective_scan(  # (C·h + D x) · SiLU(z), gated inside the scan
            x,
            delta,
            A,
            B,
            C,
            self.D,
            z=z,
            reverse=reverse,
            delta_bias=delta_bias,
            delta_softplus=True,
            chunk_size=self.chunk_size,
        )
        return self.out_proj(y)

    def _convolve(self, x: torch.Tensor, *, reverse: bool, key_padding_mask=None) -> torch.Tensor:
        """The depthwise convolution of ``x`` (batch, time, d_inner): causal, or looking ahead.

        A plain ``nn.Conv1d`` runs as :func:`depthwise_conv1d` on the channels-last tensor; a
        replaced one (a quantized convolution, whose forward quantizes its weight and input)
        runs its own forward causally, for ``reverse`` on each utterance's valid frames in
        reverse order with its padding left at the end: a quantized input is not zero on padded
        frames, so they must never be looked at.
        """
        if type(self.conv1d) is nn.Conv1d:
            return depthwise_conv1d(x, self.conv1d.weight, self.conv1d.bias, reverse=reverse)

        def causal(sequence):
            return self.conv1d(sequence.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)

        if not reverse:
            return causal(x)
        if key_padding_mask is None:
            return causal(x.flip(1)).flip(1)
        index = reverse_valid_index(key_padding_mask)[..., None].expand_as(x)
        return causal(x.gather(1, index)).gather(1, index)

    def _forward_kernels(self, u: torch.Tensor) -> torch.Tensor:
        """The same computation on ``mamba_ssm`` (and ``causal_conv1d``) CUDA kernels."""
        time = u.shape[1]
        x, z = self.in_proj(u).transpose(1, 2).chunk(2, dim=1)  # each (batch, d_inner, time)
        if causal_conv1d_fn is not None:
            weight = self.conv1d.weight.squeeze(1)  # (d_inner, d_conv)
            x = causal_conv1d_fn(x.contiguous(), weight, self.conv1d.bias, activation="silu")
        else:
            x = F.silu(self.conv1d(x)[..., :time])
        x_dbl = self.x_proj(x.transpose(1, 2))  # (batch, time, dt_rank + 2 · d_state)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (batch, d_inner, time)
        y = mamba_ssm_selective_scan(
            x.contiguous(),
            delta.contiguous(),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2).contiguous(),  # (batch, d_state, time)
            C.transpose(1, 2).contiguous(),
            self.D.float(),
            z=z.contiguous(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )  # (batch, d_inner, time), already gated by SiLU(z)
        return self.out_proj(y.transpose(1, 2))


def depthwise_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, reverse: bool = False
) -> torch.Tensor:
    """Depthwise convolution over time in the (batch, time, channels) layout, zero padded.

    Causal (output ``t`` sees inputs ``t - k + 1 .. t``), or with ``reverse`` anti-causal (``t ..
    t + k - 1``, the taps in reverse order: the causal convolution of the flipped sequence,
    flipped back). On the CPU, one channels-last 2-D convolution; elsewhere ``k`` shifted
    multiply-adds, so the channels-last activations are never transposed for ``conv1d``.

    Arguments
    ---------
    x : torch.Tensor
        (batch, time, channels); any strides.
    weight : torch.Tensor
        (channels, 1, k), as ``nn.Conv1d(channels, channels, k, groups=channels).weight``.
    bias : torch.Tensor or None
        (channels,).
    reverse : bool
        Look ahead instead of back.

    Returns
    -------
    torch.Tensor
        (batch, time, channels).

    Example
    -------
    >>> import torch
    >>> conv = nn.Conv1d(3, 3, 4, groups=3, padding=3)
    >>> x = torch.randn(2, 10, 3)
    >>> causal = conv(x.transpose(1, 2))[..., :10].transpose(1, 2)
    >>> torch.allclose(depthwise_conv1d(x, conv.weight, conv.bias), causal, atol=1e-6)
    True
    >>> ahead = depthwise_conv1d(x, conv.weight, conv.bias, reverse=True)
    >>> flipped = conv(x.flip(1).transpose(1, 2))[..., :10].transpose(1, 2).flip(1)
    >>> torch.allclose(ahead, flipped, atol=1e-6)
    True
    """
    batch, time, channels = x.shape
    k = weight.shape[-1]
    if x.device.type == "cpu":
        # One channels-last 2-D convolution of height 1: on the CPU ~8x faster than the k
        # multiply-adds below (1152 channels, 2000 frames, k = 4, one thread: 0.5-1.3 vs 10.5 ms);
        # for reverse, the flipped taps and the last ``time`` outputs look ahead instead.
        taps = weight.flip(-1) if reverse else weight
        out = conv1d_as_channels_last_2d(
            x.transpose(1, 2), taps, bias, padding=k - 1, groups=channels
        )  # (batch, channels, time + k - 1)
        return (out[..., k - 1 :] if reverse else out[..., :time]).transpose(1, 2)
    return depthwise_conv1d_taps(x, weight, bias, reverse=reverse)


def depthwise_conv1d_taps(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, reverse: bool = False
) -> torch.Tensor:
    """:func:`depthwise_conv1d` as ``k`` shifted multiply-adds on ``x`` (batch, time, channels)
    without transposing it (the path off the CPU).

    Example
    -------
    >>> import torch
    >>> conv = nn.Conv1d(3, 3, 4, groups=3, padding=3)
    >>> x = torch.randn(2, 10, 3)
    >>> for reverse in (False, True):
    ...     taps = depthwise_conv1d_taps(x, conv.weight, conv.bias, reverse=reverse)
    ...     fused = depthwise_conv1d(x, conv.weight, conv.bias, reverse=reverse)
    ...     print(torch.allclose(taps, fused, atol=1e-6))
    True
    True
    """
    batch, time, channels = x.shape
    k = weight.shape[-1]
    taps = weight.reshape(channels, k)
    if reverse:
        taps = taps.flip(-1)
    padded = F.pad(x, (0, 0, 0, k - 1) if reverse else (0, 0, k - 1, 0))  # (batch, time+k-1, ch)
    # causal: out_t = Σ_j w_j x_(t-k+1+j) = Σ_j w_j padded_(t+j); anti-causal likewise, taps flipped
    start = padded[:, :time]
    out = start * taps[:, 0] if bias is None else torch.addcmul(bias, start, taps[:, 0])
    for j in range(1, k):
        out.addcmul_(padded[:, j : j + time], taps[:, j])
    return out


def suffix_padding_lengths(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Valid lengths (batch,) of a mask that pads only the end of each row; else ``ValueError``.

    Example
    -------
    >>> import torch
    >>> suffix_padding_lengths(torch.tensor([[False, False, True], [False, False, False]]))
    tensor([2, 3])
    """
    lengths = (~key_padding_mask).sum(dim=1)  # (batch,)
    if not torch.equal(
        key_padding_mask, lengths_to_padding_mask(lengths, key_padding_mask.shape[1])
    ):
        raise ValueError(
            "mamba: key_padding_mask must pad only the end of each row (True after the valid "
            "frames); got padding before a valid frame"
        )
    return lengths


def reverse_valid_index(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Per-row time index reversing each row's valid frames and keeping padded ones in place.

    Gathering with it twice is the identity. Padding must be a suffix of each row.

    Arguments
    ---------
    key_padding_mask : torch.Tensor
        Bool (batch, time), True on padded frames.

    Returns
    -------
    torch.Tensor
        Long (batch, time): ``length - 1 - t`` for valid ``t``, else ``t``.

    Example
    -------
    >>> import torch
    >>> reverse_valid_index(torch.tensor([[False, False, False, True, True]]))
    tensor([[2, 1, 0, 3, 4]])
    """
    batch, time = key_padding_mask.shape
    lengths = suffix_padding_lengths(key_padding_mask)
    steps = torch.arange(time, device=key_padding_mask.device).expand(batch, time)
    return torch.where(key_padding_mask, steps, lengths[:, None] - 1 - steps)


@MIXERS.register("mamba")
class BidirectionalMamba(nn.Module):
    """Bidirectional Mamba mixer: ``M_f(u) + flip(M_b(flip(u)))``, each row flipped on its own.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Ignored (Mamba has no heads); accepted so every mixer is built alike.
    d_state : int
        State size N per channel.
    d_conv : int
        Kernel size of the causal depthwise convolution.
    expand : int
        ``d_inner = expand · d_model``.
    dt_rank : int or "auto"
        Rank of the Δ projection; ``"auto"`` is ``ceil(d_model / 16)``.
    bidirectional : bool
        ``False`` keeps only the left-to-right block (a causal mixer).
    dropout : float
        Dropout on the output (training only).
    use_kernels : "auto" or bool
        See :class:`MambaBlock`.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mixer = BidirectionalMamba(d_model=474)
    >>> sum(p.numel() for p in mixer.parameters())  # Study B's base width
    2914152
    >>> mixer = BidirectionalMamba(d_model=8, d_state=4)
    >>> mixer(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int = 1,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        bidirectional: bool = True,
        dropout: float = 0.0,
        use_kernels: str | bool = "auto",
        device=None,
        dtype=None,
    ):
        super().__init__()
        del nhead  # no heads
        block = {
            "d_model": d_model,
            "d_state": d_state,
            "d_conv": d_conv,
            "expand": expand,
            "dt_rank": dt_rank,
            "use_kernels": use_kernels,
            "device": device,
            "dtype": dtype,
        }
        self.d_model = d_model
        self.bidirectional = bidirectional
        self.forward_block = MambaBlock(**block)
        self.backward_block = MambaBlock(**block) if bidirectional else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Mix ``x`` (batch, time, d_model); ``key_padding_mask`` (batch, time), True = padded.

        Returns (batch, time, d_model), zero on padded frames.
        """
        x = prepare_input(x, key_padding_mask, self.d_model, "mamba")
        if x.shape[1] == 0:
            return empty_output(x)
        out = self.forward_block(x)
        if self.backward_block is not None:
            out = out + self.backward_block(x, reverse=True, key_padding_mask=key_padding_mask)
        return zero_padded(self.dropout(out), key_padding_mask)
