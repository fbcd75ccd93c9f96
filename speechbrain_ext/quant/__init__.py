"""Quantized encoders: BiT binarization (1-bit weights and activations) and k-bit variants.

- :mod:`.quantizers`: the registry of weight and activation quantizers (one file each);
- :mod:`.layers`: quantized Linear / Conv1d / Conv2d / GroupedLinear / ParallelMLP;
- :mod:`.attention`: quantized Q, K, V and attention probabilities;
- :mod:`.spec`: the ``"w1a1,keep=..."`` specifications;
- :mod:`.model`: :func:`quantize_model` and the bit widths a quantized model reports;
- :mod:`.packing`: real 1-bit (k-bit) models on disk, :func:`pack_model`, :func:`load_packed`;
- :mod:`.distill`: BiT multi-distillation, :class:`DistillationModel`, :func:`make_student`;
- :mod:`.stages`: a recipe's quantization stages (one student, or W1A4 → W1A2 → W1A1);
- :mod:`.xnor`: a bit-packed XNOR-popcount matrix product for W1A1 layers on CPU.

``python -m speechbrain_ext.quant pack|errors`` are the command lines. See
``docs/quantization.md``.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> from speechbrain_ext.quant import quantize_model
>>> mixer = quantize_model(build_mixer("mhsa", d_model=16, nhead=2), "w1a1")
>>> mixer(torch.randn(1, 6, 16)).shape
torch.Size([1, 6, 16])
"""

from speechbrain_ext.quant.distill import DistillationModel, make_student
from speechbrain_ext.quant.model import (
    initialize_quantizers,
    is_quantized,
    load_fp32_state_dict,
    quant_spec,
    quantize_model,
    quantized_bits,
    quantized_storage_bytes,
)
from speechbrain_ext.quant.spec import QuantSpec, parse_spec

__all__ = [
    "DistillationModel",
    "QuantSpec",
    "initialize_quantizers",
    "is_quantized",
    "load_fp32_state_dict",
    "make_student",
    "parse_spec",
    "quant_spec",
    "quantize_model",
    "quantized_bits",
    "quantized_storage_bytes",
]
