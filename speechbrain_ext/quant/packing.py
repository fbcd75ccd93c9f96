"""Quantized models on disk: k-bit weight codes packed 8/k per byte, everything else FP32.

A packed folder holds

- ``quantized.bin``: for every quantized weight, its codes packed ``8 / bits`` per byte (first
  value in the lowest bits), followed by its FP32 scalars (BWN: scale and mean; uniform: scale);
- ``remainder.pt``: every other entry of the ``state_dict`` (biases, norms, activation
  quantizers' α and β, buffers), FP32, with ``torch.save``;
- ``packed.json``: how to rebuild the architecture (``source``), the spec, and where each
  weight lies in ``quantized.bin``.

:func:`load_packed` rebuilds the model, quantizes it with the same spec and loads the decoded
weights with the weight quantizers switched off (``freeze_weights``): its outputs equal the
training-time quantized model's exactly.

Example
-------
>>> import torch
>>> codes = torch.tensor([1, 0, 1, 1, 0, 0, 0, 1, 1], dtype=torch.uint8)
>>> packed = pack_codes(codes, bits=1)
>>> packed.tolist()  # 9 one-bit codes in 2 bytes
[141, 1]
>>> torch.equal(unpack_codes(packed, bits=1, count=9), codes)
True
"""

import json
import struct
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from speechbrain_ext.quant.layers import QuantLayerMixin
from speechbrain_ext.quant.model import quant_spec, quantize_model
from speechbrain_ext.quant.quantizers import QUANTIZERS

FORMAT_VERSION = 1
BIN_NAME, REMAINDER_NAME, INDEX_NAME = "quantized.bin", "remainder.pt", "packed.json"


def pack_codes(codes: torch.Tensor, *, bits: int) -> torch.Tensor:
    """Integer codes (any shape, values < 2**bits) packed ``8 // bits`` per byte (uint8, 1-D)."""
    if bits not in (1, 2, 4, 8):
        raise ValueError(f"codes pack at 1, 2, 4 or 8 bits, got {bits}")
    flat = codes.reshape(-1).to(torch.uint8)
    if flat.numel() and int(flat.max()) >= 2**bits:
        raise ValueError(f"a code does not fit in {bits} bits")
    per_byte = 8 // bits
    flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % per_byte))
    groups = flat.view(-1, per_byte).to(torch.int32)
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    return (groups << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, *, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: the first ``count`` codes (uint8, 1-D)."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    values = (packed.to(torch.int32).unsqueeze(1) >> shifts) & (2**bits - 1)
    return values.reshape(-1)[:count].to(torch.uint8)


def build_source(source: dict) -> nn.Module:
    """The FP32 model described by ``source``.

    ``{"type": "encoder", "name": preset_or_kind, "options": {...}}`` builds
    ``build_encoder(name, **options)``; ``{"type": "bestrq", "config": {...}}`` builds
    ``build_bestrq_model(**config)``.
    """
    kind = source.get("type")
    if kind == "encoder":
        from speechbrain_ext.nnet.encoders import build_encoder

        return build_encoder(source["name"], **source.get("options", {}))
    if kind == "bestrq":
        from speechbrain_ext.ssl.model import build_bestrq_model

        return build_bestrq_model(**source["config"])
    raise ValueError(f"unknown model source type {kind!r}; valid: encoder, bestrq")


def _weight_keys(model: nn.Module) -> dict[str, list[str]]:
    """Quantized weight -> the latent state_dict keys it stands for."""
    keys = {}
    for name, module in model.named_modules():
        if not isinstance(module, QuantLayerMixin):
            continue
        prefix = f"{name}." if name else ""
        for pname in module.weight_quantizers:
            if parametrize.is_parametrized(module, pname):
                plist = module.parametrizations[pname]
                latent = [f"{prefix}parametrizations.{pname}.{k}" for k in plist.state_dict()]
            else:
                latent = [f"{prefix}{pname}"]
            keys[f"{prefix}{pname}"] = latent
    return keys


def _check_initialized(model: nn.Module) -> None:
    for name, module in model.named_modules():
        initialized = getattr(module, "initialized", None)
        if isinstance(initialized, torch.Tensor) and not bool(initialized):
            raise ValueError(
                f"activation quantizer {name} has not seen a batch yet: run "
                "speechbrain_ext.quant.initialize_quantizers(model, inputs) before packing"
            )


@torch.no_grad()
def pack_model(model: nn.Module, folder, *, source: dict) -> dict:
    """Write the quantized ``model`` to ``folder`` (see the module docstring).

    Arguments
    ---------
    model : nn.Module
        A model quantized by :func:`~speechbrain_ext.quant.quantize_model` whose activation
        quantizers are initialised.
    folder : str or Path
        Output folder (created).
    source : dict
        How to build the FP32 architecture again (:func:`build_source`).

    Returns
    -------
    dict
        Sizes on disk in bytes: ``packed_total``, ``packed_quantized`` (``quantized.bin``),
        ``fp32_total`` and ``fp32_quantized`` (the same weights saved FP32 with
        ``torch.save``), and ``num_quantized_weights``.
    """
    _check_initialized(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    latent_keys = _weight_keys(model)
    entries, chunks, offset = [], [], 0
    fp32_weights = {}
    for name, module in model.named_modules():
        if not isinstance(module, QuantLayerMixin):
            continue
        prefix = f"{name}." if name else ""
        for pname, quantizer in module.weight_quantizers.items():
            weight = getattr(module, pname).detach()
            fp32_weights[prefix + pname] = weight.float().clone()
            codes, scalars = quantizer.encode(weight)
            data = pack_codes(codes, bits=quantizer.bits).numpy().tobytes()
            data += struct.pack(f"<{len(scalars)}f", *scalars.values())
            entries.append(
                {
                    "weight": prefix + pname,
                    "quantizer": _registry_name(quantizer),
                    "bits": quantizer.bits,
                    "shape": list(weight.shape),
                    "dtype": str(weight.dtype).removeprefix("torch."),
                    "scalars": list(scalars),
                    "offset": offset,
                    "nbytes": len(data),
                }
            )
            chunks.append(data)
            offset += len(data)
    (folder / BIN_NAME).write_bytes(b"".join(chunks))
    skip = {key for keys in latent_keys.values() for key in keys}
    torch.save({k: v for k, v in state.items() if k not in skip}, folder / REMAINDER_NAME)
    index = {"format": FORMAT_VERSION, "source": source, "spec": quant_spec(model)}
    index["weights"] = entries
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n")

    sizes = {
        "packed_total": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
        "packed_quantized": (folder / BIN_NAME).stat().st_size,
        "num_quantized_weights": len(entries),
    }
    fp32_state = {k: v for k, v in state.items() if not _is_quantizer_key(k)}
    with tempfile.TemporaryDirectory() as scratch:
        torch.save(fp32_state, Path(scratch) / "fp32.pt")
        torch.save(fp32_weights, Path(scratch) / "fp32_quantized.pt")
        sizes["fp32_total"] = (Path(scratch) / "fp32.pt").stat().st_size
        sizes["fp32_quantized"] = (Path(scratch) / "fp32_quantized.pt").stat().st_size
    return sizes


def _is_quantizer_key(key: str) -> bool:
    from speechbrain_ext.quant.model import QUANTIZER_KEYS

    return any(q in key for q in QUANTIZER_KEYS)


def _registry_name(quantizer: nn.Module) -> str:
    for name in QUANTIZERS.names():
        if type(quantizer) is QUANTIZERS.get(name):
            return name
    raise ValueError(f"{type(quantizer).__name__} is not a registered quantizer")


@torch.no_grad()
def load_packed(folder, *, map_location="cpu") -> nn.Module:
    """The quantized model saved by :func:`pack_model` in ``folder`` (eval mode).

    The weights are the decoded quantized values and are not re-quantized
    (``QuantLayerMixin.freeze_weights``), so outputs equal those of the packed model.
    """
    folder = Path(folder)
    index = json.loads((folder / INDEX_NAME).read_text())
    if index.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: unknown packed format {index.get('format')!r}")
    model = quantize_model(build_source(index["source"]), index["spec"])
    blob = (folder / BIN_NAME).read_bytes()
    decoded = {}
    for entry in index["weights"]:
        quantizer = QUANTIZERS.build(entry["quantizer"], bits=entry["bits"])
        count = 1
        for size in entry["shape"]:
            count *= size
        nbytes = entry["nbytes"] - 4 * len(entry["scalars"])
        raw = blob[entry["offset"] : entry["offset"] + entry["nbytes"]]
        packed = torch.frombuffer(bytearray(raw[:nbytes]), dtype=torch.uint8)
        codes = unpack_codes(packed, bits=entry["bits"], count=count).view(entry["shape"])
        values = struct.unpack(f"<{len(entry['scalars'])}f", raw[nbytes:])
        scalars = dict(zip(entry["scalars"], values))
        dtype = getattr(torch, entry["dtype"])
        decoded[entry["weight"]] = quantizer.decode(codes, scalars, dtype=dtype)
    for module in model.modules():
        if isinstance(module, QuantLayerMixin):
            for pname in list(module.weight_quantizers):
                if parametrize.is_parametrized(module, pname):
                    parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
            module.frozen = True
    remainder = torch.load(folder / REMAINDER_NAME, map_location=map_location)
    result = model.load_state_dict({**remainder, **decoded}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(
            f"{folder}: packed weights do not fit the rebuilt model: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model.eval()
