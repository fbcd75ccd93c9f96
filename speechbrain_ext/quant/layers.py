"""Quantized layers: drop-in subclasses of the FP32 layers with the same parameter names.

Every quantized layer keeps the latent FP32 weights under the FP32 layer's names (``weight``,
``bias``; ``weight1``... for :class:`QuantParallelMLP`), so an FP32 ``state_dict`` loads into it
(only the quantizers' own entries, ``*_quantizers.*``, are new: see
:func:`speechbrain_ext.quant.model.load_fp32_state_dict`). Its forward quantizes the weights
(``weight_quantizers[name]``) and the inputs (``input_quantizers[name]``) and runs the FP32
op on the quantized values ("fake quantization": what BiT trains with). After
:meth:`QuantLayerMixin.freeze_weights` the stored weights are the quantized ones and are used
as they are (what :func:`speechbrain_ext.quant.packing.load_packed` builds).

:data:`QUANT_LAYERS` maps each FP32 layer type to its quantized type; ``from_float`` converts
a layer in place of its parent's attribute (parameters are shared, not copied).

Example
-------
>>> import torch
>>> from torch import nn
>>> layer = QuantLinear.from_float(nn.Linear(8, 4), weight_bits=1, act_bits=1)
>>> sorted(name for name, _ in layer.named_parameters())
['bias', 'input_quantizers.input.alpha', 'input_quantizers.input.beta', 'weight']
>>> layer(torch.randn(3, 8)).shape
torch.Size([3, 4])
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from speechbrain_ext.nnet.convolution import channels_last_conv1d
from speechbrain_ext.nnet.mixers.hypermixing import ParallelMLP
from speechbrain_ext.nnet.mixers.summarymixing import GroupedLinear
from speechbrain_ext.quant.quantizers import QUANTIZERS, default_quantizer

#: FP32 layer type -> quantized layer type (filled by :func:`register_quant_layer`).
QUANT_LAYERS: dict[type, type] = {}


def register_quant_layer(float_type: type):
    """Class decorator: the decorated quantized class replaces ``float_type`` layers."""

    def decorator(cls):
        QUANT_LAYERS[float_type] = cls
        return cls

    return decorator


def build_weight_quantizer(bits: int, name: str | None = None) -> nn.Module | None:
    """The weight quantizer for ``bits`` (None at 32 bits)."""
    if bits >= 32:
        return None
    return QUANTIZERS.build(name or default_quantizer("weight", bits), bits=bits)


def build_act_quantizer(bits: int, name: str | None = None, **options) -> nn.Module | None:
    """The activation quantizer for ``bits`` (None at 32 bits)."""
    if bits >= 32:
        return None
    return QUANTIZERS.build(name or default_quantizer("activation", bits), bits=bits, **options)


class QuantLayerMixin:
    """Quantizer bookkeeping shared by the quantized layers.

    Attributes
    ----------
    weight_bits, act_bits : int
        Bit widths of the weights and of the inputs (32 = not quantized).
    weight_quantizers : nn.ModuleDict
        Parameter name -> weight quantizer.
    input_quantizers : nn.ModuleDict
        Input name -> activation quantizer.
    """

    #: Parameter names of the quantized weights; input names of the quantized inputs.
    weight_names: tuple[str, ...] = ("weight",)
    input_names: tuple[str, ...] = ("input",)
    #: Whether exact zeros of the inputs stay zero (convolutions: zero padding).
    keep_input_zeros = False

    def _setup_quantizers(
        self, *, weight_bits: int, act_bits: int, weight_quantizer=None, act_quantizer=None
    ) -> None:
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.frozen = False
        self.weight_quantizers = nn.ModuleDict()
        self.input_quantizers = nn.ModuleDict()
        for name in self.weight_names:
            quantizer = build_weight_quantizer(weight_bits, weight_quantizer)
            if quantizer is not None:
                self.weight_quantizers[name] = quantizer
        for name in self.input_names:
            quantizer = build_act_quantizer(
                act_bits, act_quantizer, keep_zeros=self.keep_input_zeros
            )
            if quantizer is not None:
                self.input_quantizers[name] = quantizer

    def quantized_weight(self, name: str = "weight") -> torch.Tensor:
        """The weight ``name`` as the forward pass uses it."""
        weight = getattr(self, name)
        if self.frozen or name not in self.weight_quantizers:
            return weight
        return self.weight_quantizers[name](weight)

    def quantize_input(self, x: torch.Tensor, name: str = "input") -> torch.Tensor:
        """``x`` through the input quantizer ``name`` (unchanged without one)."""
        if name not in self.input_quantizers:
            return x
        return self.input_quantizers[name](x)

    @torch.no_grad()
    def freeze_weights(self) -> None:
        """Store the quantized weights in place of the latent ones and stop re-quantizing."""
        for name in self.weight_quantizers:
            quantized = self.weight_quantizers[name](getattr(self, name))
            if parametrize.is_parametrized(self, name):
                parametrize.remove_parametrizations(self, name, leave_parametrized=True)
            getattr(self, name).copy_(quantized)
        self.frozen = True

    @classmethod
    def _copy_state(cls, layer: nn.Module, source: nn.Module) -> nn.Module:
        """Share ``source``'s parameters, buffers and weight parametrizations with ``layer``."""
        for name, param in source.named_parameters(recurse=False):
            setattr(layer, name, param)
        for name, buffer in source.named_buffers(recurse=False):
            setattr(layer, name, buffer)
        if parametrize.is_parametrized(source):
            for name, plist in source.parametrizations.items():
                for parametrization in plist:
                    parametrize.register_parametrization(layer, name, parametrization)
                for index, original in enumerate(_originals(plist)):
                    setattr(layer.parametrizations[name], _original_name(plist, index), original)
        layer.train(source.training)
        return layer

    def quant_extra_repr(self) -> str:
        """The bit widths, for ``extra_repr``."""
        return f"weight_bits={self.weight_bits}, act_bits={self.act_bits}"


def _originals(plist) -> list:
    if plist.is_tensor:
        return [plist.original]
    return [getattr(plist, f"original{i}") for i in range(plist.ntensors)]


def _original_name(plist, index: int) -> str:
    return "original" if plist.is_tensor else f"original{index}"


def _factory(source: nn.Module) -> dict:
    tensor = next(iter(source.parameters()), None)
    if tensor is None:
        return {}
    return {"device": tensor.device, "dtype": tensor.dtype}


@register_quant_layer(nn.Linear)
class QuantLinear(QuantLayerMixin, nn.Linear):
    """``nn.Linear`` with quantized weights and inputs.

    Arguments
    ---------
    in_features, out_features : int
        As ``nn.Linear``.
    bias : bool
        As ``nn.Linear``.
    weight_bits, act_bits : int
        Bits of the weights and of the inputs (32: not quantized).
    weight_quantizer, act_quantizer : str, optional
        Registry names; defaults by bit width (BWN / uniform, elastic binary / uniform).
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> layer = QuantLinear(4, 2, weight_bits=4, act_bits=8)
    >>> layer(torch.randn(5, 4)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight_bits: int = 1,
        act_bits: int = 1,
        weight_quantizer: str | None = None,
        act_quantizer: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_quantizers(
            weight_bits=weight_bits,
            act_bits=act_bits,
            weight_quantizer=weight_quantizer,
            act_quantizer=act_quantizer,
        )

    @classmethod
    def from_float(cls, source: nn.Linear, **bits) -> "QuantLinear":
        """A quantized layer sharing ``source``'s parameters."""
        layer = cls(
            source.in_features,
            source.out_features,
            bias=source.bias is not None,
            **bits,
            **_factory(source),
        )
        return cls._copy_state(layer, source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        return F.linear(self.quantize_input(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:  # noqa: D102
        return f"{super().extra_repr()}, {self.quant_extra_repr()}"


class _QuantConvMixin(QuantLayerMixin):
    keep_input_zeros = True

    def __init__(self, *args, weight_bits=1, act_bits=1, weight_quantizer=None, **kwargs):
        act_quantizer = kwargs.pop("act_quantizer", None)
        super().__init__(*args, **kwargs)
        self._setup_quantizers(
            weight_bits=weight_bits,
            act_bits=act_bits,
            weight_quantizer=weight_quantizer,
            act_quantizer=act_quantizer,
        )

    @classmethod
    def from_float(cls, source, **bits):
        """A quantized convolution sharing ``source``'s parameters."""
        layer = cls(
            source.in_channels,
            source.out_channels,
            source.kernel_size,
            stride=source.stride,
            padding=source.padding,
            dilation=source.dilation,
            groups=source.groups,
            bias=source.bias is not None,
            padding_mode=source.padding_mode,
            **bits,
            **_factory(source),
        )
        return cls._copy_state(layer, source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve the quantized input with the quantized weight (zero padding stays zero)."""
        return self._conv_forward(self.quantize_input(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:  # noqa: D102
        return f"{super().extra_repr()}, {self.quant_extra_repr()}"


@register_quant_layer(nn.Conv1d)
class QuantConv1d(_QuantConvMixin, nn.Conv1d):
    """``nn.Conv1d`` with quantized weights and inputs; exact zeros of the input (zeroed padded
    frames) stay zero, like the convolution's own zero padding.

    Arguments are those of ``nn.Conv1d`` plus ``weight_bits``, ``act_bits``,
    ``weight_quantizer``, ``act_quantizer`` (see :class:`QuantLinear`).

    Example
    -------
    >>> import torch
    >>> conv = QuantConv1d(4, 4, 3, padding=1, groups=4, weight_bits=1, act_bits=1)
    >>> x = torch.randn(1, 4, 6)
    >>> x[..., 4:] = 0.0  # padded frames
    >>> conv(x).shape
    torch.Size([1, 4, 6])
    """

    def _conv_forward(self, x, weight, bias):  # as the FP32 blocks' convolutions run
        return channels_last_conv1d(self, x, weight, bias)


@register_quant_layer(nn.Conv2d)
class QuantConv2d(_QuantConvMixin, nn.Conv2d):
    """``nn.Conv2d`` with quantized weights and inputs (see :class:`QuantConv1d`).

    Example
    -------
    >>> import torch
    >>> QuantConv2d(1, 2, 3, weight_bits=2, act_bits=8)(torch.randn(1, 1, 5, 5)).shape
    torch.Size([1, 2, 3, 3])
    """


@register_quant_layer(GroupedLinear)
class QuantGroupedLinear(QuantLayerMixin, GroupedLinear):
    """SummaryMixing's block-diagonal linear map with quantized weights and inputs.

    Arguments are those of :class:`~speechbrain_ext.nnet.mixers.summarymixing.GroupedLinear`
    plus the bit widths and quantizer names of :class:`QuantLinear`.

    Example
    -------
    >>> import torch
    >>> QuantGroupedLinear(8, 4, groups=2, weight_bits=1, act_bits=1)(torch.randn(3, 8)).shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        groups: int = 1,
        weight_bits: int = 1,
        act_bits: int = 1,
        weight_quantizer: str | None = None,
        act_quantizer: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__(in_dim, out_dim, groups=groups, device=device, dtype=dtype)
        self._setup_quantizers(
            weight_bits=weight_bits,
            act_bits=act_bits,
            weight_quantizer=weight_quantizer,
            act_quantizer=act_quantizer,
        )

    @classmethod
    def from_float(cls, source: GroupedLinear, **bits) -> "QuantGroupedLinear":
        """A quantized layer sharing ``source``'s parameters."""
        groups, block_in, block_out = source.weight.shape
        layer = cls(
            groups * block_in, groups * block_out, groups=groups, **bits, **_factory(source)
        )
        return cls._copy_state(layer, source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        x = self.quantize_input(x)
        weight = self.quantized_weight()  # (groups, in/groups, out/groups)
        if self.groups == 1:
            return x @ weight[0] + self.bias
        out = torch.einsum("...gi,gio->...go", x.unflatten(-1, (self.groups, -1)), weight)
        return out.flatten(-2) + self.bias


@register_quant_layer(ParallelMLP)
class QuantParallelMLP(QuantLayerMixin, ParallelMLP):
    """HyperMixing's per-head hypernetwork MLPs with quantized weights and inputs (both layers).

    Arguments are those of :class:`~speechbrain_ext.nnet.mixers.hypermixing.ParallelMLP`
    plus the bit widths and quantizer names of :class:`QuantLinear`.

    Example
    -------
    >>> import torch
    >>> mlp = QuantParallelMLP(nhead=2, in_dim=3, hidden_dim=5, out_dim=4)
    >>> mlp(torch.randn(7, 2, 10, 3)).shape
    torch.Size([7, 2, 10, 4])
    """

    weight_names = ("weight1", "weight2")
    input_names = ("input1", "input2")

    def __init__(
        self,
        *,
        nhead: int,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        weight_bits: int = 1,
        act_bits: int = 1,
        weight_quantizer: str | None = None,
        act_quantizer: str | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__(
            nhead=nhead,
            in_dim=in_dim,
            hidden_dim=hidden_dim,
            out_dim=out_dim,
            device=device,
            dtype=dtype,
        )
        self._setup_quantizers(
            weight_bits=weight_bits,
            act_bits=act_bits,
            weight_quantizer=weight_quantizer,
            act_quantizer=act_quantizer,
        )

    @classmethod
    def from_float(cls, source: ParallelMLP, **bits) -> "QuantParallelMLP":
        """A quantized module sharing ``source``'s parameters."""
        nhead, in_dim, hidden_dim = source.weight1.shape
        layer = cls(
            nhead=nhead,
            in_dim=in_dim,
            hidden_dim=hidden_dim,
            out_dim=source.weight2.shape[-1],
            **bits,
            **_factory(source),
        )
        return cls._copy_state(layer, source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, head, time, in_dim) -> (batch, head, time, out_dim)."""
        x = self.quantize_input(x, "input1")
        hidden = F.gelu(torch.matmul(x, self.quantized_weight("weight1")) + self.bias1)
        hidden = self.quantize_input(hidden, "input2")
        return torch.matmul(hidden, self.quantized_weight("weight2")) + self.bias2
