"""``quantize_model``: swap every Linear / Conv of a model for its quantized layer, in place.

What is quantized (see ``docs/quantization.md``): every ``nn.Linear``, ``nn.Conv1d``,
``nn.Conv2d`` (weight-normalised ones too), SummaryMixing's ``GroupedLinear`` and
HyperMixing's ``ParallelMLP`` whose name the spec selects, at the spec's weight and input bits;
and, unless ``attention=off``, the Q, K, V and softmax probabilities of MHSA and sparse
attention (:class:`~speechbrain_ext.quant.attention.QuantizedAttention`). Norms, biases,
embeddings, position tensors, Mamba's scan parameters and every other product stay FP32.

The model keeps its parameter names, so the usual ``state_dict`` saving and loading work, and a
student is made from its FP32 teacher by quantizing a copy:
``student = quantize_model(copy.deepcopy(teacher), "w1a1")``.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.encoders import build_encoder
>>> encoder = build_encoder("transformer", num_layers=1, d_model=16, nhead=2, d_ffn=32)
>>> encoder = quantize_model(encoder, "w1a1,keep=layers.0.ffn")
>>> quantized_bits(encoder)  # doctest: +NORMALIZE_WHITESPACE
{'layers.0.mixer.attention_quantizer': (32, 1), 'layers.0.mixer.in_proj': (1, 1),
 'layers.0.mixer.out_proj': (1, 1)}
>>> encoder.quant_spec
'w1a1,keep=layers.0.ffn'
>>> encoder(torch.randn(2, 5, 16))[-1].shape
torch.Size([2, 5, 16])
"""

import torch
from torch import nn
from torch.nn.utils import parametrize

from speechbrain_ext.quant.attention import QuantizedAttention
from speechbrain_ext.quant.layers import QUANT_LAYERS, QuantLayerMixin
from speechbrain_ext.quant.spec import QuantSpec, _matches, parse_spec

#: Substrings of the state_dict keys that exist only in a quantized model.
QUANTIZER_KEYS = ("weight_quantizers.", "input_quantizers.", "attention_quantizer.")


def _float_type(module: nn.Module) -> type | None:
    """The FP32 layer type ``module`` is an instance of (parametrized layers included)."""
    if isinstance(module, QuantLayerMixin):
        return None
    cls = type(module)
    if parametrize.is_parametrized(module):
        cls = cls.__bases__[0]
    return next((c for c in cls.__mro__ if c in QUANT_LAYERS), None)


def is_quantized(model: nn.Module) -> bool:
    """Whether any module of ``model`` is a quantized layer or attention."""
    return any(isinstance(m, (QuantLayerMixin, QuantizedAttention)) for m in model.modules())


def _check_patterns(model: nn.Module, spec: QuantSpec) -> None:
    names = [name for name, _ in model.named_modules() if name]
    names += [  # the attention quantizers quantize_model would attach
        f"{name}.attention_quantizer" if name else "attention_quantizer"
        for name, module in model.named_modules()
        if hasattr(module, "attention_quantizer")
    ]
    for key, patterns in (("keep", spec.keep), ("only", spec.only or ())):
        for pattern in patterns:
            if not any(_matches(name, pattern) for name in names):
                examples = ", ".join(names[:6])
                raise ValueError(
                    f"{key} pattern {pattern!r} of quantization spec {spec.label!r} matches no "
                    f"module of {type(model).__name__} (module names look like: {examples}, ...)"
                )


def quantize_model(model: nn.Module, spec) -> nn.Module:
    """Quantize ``model`` in place according to ``spec`` and return it.

    Arguments
    ---------
    model : nn.Module
        Any model; its layers are replaced by quantized ones sharing their parameters.
    spec : str, dict or QuantSpec
        See :mod:`speechbrain_ext.quant.spec` (``"w1a1"``, ``"w4a8,keep=front_end"``...).

    Returns
    -------
    nn.Module
        ``model`` itself, with ``model.quant_spec`` the canonical spec string.
    """
    spec = parse_spec(spec)
    if is_quantized(model):
        raise ValueError(f"{type(model).__name__} is already quantized ({quant_spec(model)})")
    _check_patterns(model, spec)
    model.quant_spec = spec.label
    if spec.is_fp32:
        return model
    bits = {
        "weight_bits": spec.weight_bits,
        "act_bits": spec.act_bits,
        "weight_quantizer": spec.weight_quantizer,
        "act_quantizer": spec.act_quantizer,
    }
    for name, module in list(model.named_modules()):
        float_type = _float_type(module)
        if float_type is not None and spec.selects(name):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, QUANT_LAYERS[float_type].from_float(module, **bits))
        elif (
            hasattr(module, "attention_quantizer")
            and spec.attention
            and spec.act_bits < 32
            and spec.selects(f"{name}.attention_quantizer" if name else "attention_quantizer")
        ):
            module.attention_quantizer = QuantizedAttention(
                bits=spec.act_bits, act_quantizer=spec.act_quantizer
            )
    for module in model.modules():
        # Mamba's fused CUDA path reads conv1d / dt_proj weights directly: keep the PyTorch path.
        if hasattr(module, "use_kernels") and any(
            isinstance(m, QuantLayerMixin) for m in module.modules()
        ):
            module.use_kernels = False
    return model


def quant_spec(model: nn.Module) -> str:
    """The spec ``model`` was quantized with (``"fp32"`` if never)."""
    return getattr(model, "quant_spec", "fp32")


def quantized_bits(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Module name -> (weight bits, activation bits) of every quantized part of ``model``.

    Quantized layers give their weight and input bits; a quantized attention gives
    ``(32, bits)`` for its activation × activation products (recorded under the attention
    quantizer, or under a sparse mixer whose products run in its own forward).
    """
    bits = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantLayerMixin):
            bits[name] = (module.weight_bits, module.act_bits)
        elif isinstance(getattr(module, "attention_quantizer", None), QuantizedAttention):
            key = f"{name}.attention_quantizer" if name else "attention_quantizer"
            bits[key] = (32, module.attention_quantizer.bits)
            if type(module).__name__ == "SparseAttention":  # strided products in its forward
                bits[name] = (32, module.attention_quantizer.bits)
    return bits


def quantized_storage_bytes(model: nn.Module) -> float:
    """Bytes of ``model``'s parameters as stored by :mod:`~speechbrain_ext.quant.packing`.

    Quantized weights at their bits plus their FP32 scalars (BWN: scale and mean; uniform:
    scale); every other parameter (biases, norms, α and β of the activation quantizers) at its
    dtype's width.
    """
    total_bits = 0
    quantized = set()
    for module in model.modules():
        if isinstance(module, QuantLayerMixin):
            for pname, quantizer in module.weight_quantizers.items():
                weight = getattr(module, pname)
                quantized.add(id(weight))
                if parametrize.is_parametrized(module, pname):
                    quantized.update(id(p) for p in module.parametrizations[pname].parameters())
                n_scalars = 2 if quantizer.bits == 1 else 1
                total_bits += weight.numel() * quantizer.bits + 32 * n_scalars
    for param in model.parameters():
        if id(param) not in quantized:
            total_bits += param.numel() * param.element_size() * 8
    return total_bits / 8


def load_fp32_state_dict(model: nn.Module, state_dict: dict) -> None:
    """Load an FP32 model's ``state_dict`` into the quantized ``model`` (a student from its
    teacher). Only the quantizers' own entries may be missing; they keep their values (α is
    then initialised from the first batch).
    """
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not any(q in k for q in QUANTIZER_KEYS)]
    if missing or result.unexpected_keys:
        raise KeyError(
            f"FP32 state_dict does not fit the quantized model: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


@torch.no_grad()
def initialize_quantizers(model: nn.Module, *inputs, **kwargs) -> None:
    """Run ``model(*inputs, **kwargs)`` once (eval, no grad) so every activation quantizer
    initialises α from this batch; the training mode is restored afterwards.
    """
    training = model.training
    model.eval()
    try:
        model(*inputs, **kwargs)
    finally:
        model.train(training)
