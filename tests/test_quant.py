"""Quantization (BiT): quantizers against hand-computed values, every encoder and mixer
quantized, trained one step, packed and reloaded exactly; padding invariance; specs."""

import copy
import math
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from speechbrain_ext.nnet import cpu_kernels
from speechbrain_ext.nnet.encoders import build_encoder
from speechbrain_ext.nnet.masking import lengths_to_padding_mask
from speechbrain_ext.nnet.mixers import build_mixer, list_mixers
from speechbrain_ext.quant import (
    initialize_quantizers,
    load_fp32_state_dict,
    parse_spec,
    quantize_model,
    quantized_bits,
    quantized_storage_bytes,
)
from speechbrain_ext.quant.layers import QuantConv1d, QuantLayerMixin, QuantLinear
from speechbrain_ext.quant.packing import load_packed, pack_codes, pack_model, unpack_codes
from speechbrain_ext.quant.quantizers import QUANTIZERS
from speechbrain_ext.quant.quantizers._elastic import ELASTIC_KERNEL
from speechbrain_ext.quant.quantizers.bwn import BWNWeight
from speechbrain_ext.quant.quantizers.elastic_binary import ElasticBinary
from speechbrain_ext.quant.quantizers.elastic_uniform import ElasticUniform
from speechbrain_ext.quant.quantizers.uniform import UniformWeight

D_MODEL, NHEAD = 16, 2


def fixed(quantizer, *, alpha, beta=0.0, unsigned=None):
    """An activation quantizer with given α, β (already initialised)."""
    with torch.no_grad():
        quantizer.alpha.fill_(alpha)
        quantizer.beta.fill_(beta)
        quantizer.initialized.fill_(True)
        if unsigned is not None:
            quantizer.unsigned.fill_(unsigned)
    return quantizer


@pytest.fixture(scope="module")
def elastic_kernel():
    """The fused elastic-quantizer kernel (built at most once per session)."""
    kernel = ELASTIC_KERNEL.get()
    if kernel is None:
        if shutil.which("c++") or shutil.which("g++"):
            pytest.fail(f"a C++ compiler exists but the build failed: {ELASTIC_KERNEL.error}")
        pytest.skip("no C++ compiler: the fused elastic quantizers are unavailable")
    return kernel


@pytest.fixture(params=["kernel", "pytorch"])
def elastic_path(request, monkeypatch):
    """Run a test on the fused CPU kernel, then on the PyTorch ops."""
    if request.param == "kernel":
        request.getfixturevalue("elastic_kernel")
    else:
        monkeypatch.setitem(cpu_kernels._enabled, "value", False)
    return request.param


# ---------------------------------------------------------------- quantizers by hand
def test_bwn_forward_and_straight_through_gradient():
    w = torch.tensor([[0.5, -1.0], [2.0, 0.1]], requires_grad=True)
    out = BWNWeight(bits=1)(w)  # mean|W| = 0.9, mean(W) = 0.4
    torch.testing.assert_close(out, torch.tensor([[0.9, -0.9], [0.9, -0.9]]))
    grad = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out.backward(grad)
    assert torch.equal(w.grad, grad)


def test_uniform_weight_forward_gradient_and_codes():
    w = torch.tensor([0.2, -1.0, 0.6, -0.4], requires_grad=True)
    out = UniformWeight(bits=2)(w)  # scale 1, ternary
    assert out.tolist() == [0.0, -1.0, 1.0, -0.0]
    out.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert w.grad.tolist() == [1.0, 2.0, 3.0, 4.0]
    quantizer = UniformWeight(bits=8)
    w8 = torch.randn(50)
    codes, scalars = quantizer.encode(w8)
    assert codes.max() <= 254 and codes.min() >= 0
    assert torch.equal(quantizer.decode(codes, scalars), quantizer(w8))


def test_elastic_binary_signed_gradients(elastic_path):
    quantizer = fixed(ElasticBinary(bits=1, value_set="signed"), alpha=2.0, unsigned=False)
    x = torch.tensor([-1.0, 0.5, 5.0, -0.5], requires_grad=True)  # u = [-.5, .25, 2.5, -.25]
    out = quantizer(x)
    assert out.tolist() == [-2.0, 2.0, 2.0, -2.0]
    out.backward(torch.tensor([1.0, 2.0, 3.0, 5.0]))
    assert x.grad.tolist() == [1.0, 2.0, 0.0, 5.0]  # straight-through for |u| <= 1 only
    # dα = Σ sign(u) g / √(numel · 1) = (-1 + 2 + 3 - 5) / 2; dβ = -Σ inside g
    assert quantizer.alpha.grad.item() == pytest.approx(-0.5)
    assert quantizer.beta.grad.item() == pytest.approx(-8.0)


def test_elastic_binary_unsigned_gradients(elastic_path):
    quantizer = fixed(ElasticBinary(bits=1), alpha=1.0, beta=0.1, unsigned=True)
    x = torch.tensor([0.0, 0.4, 0.7, 1.5], requires_grad=True)  # u = [-.1, .3, .6, 1.4]
    out = quantizer(x)
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0]
    out.backward(torch.ones(4))
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    # dα: 0 below, round(u) - u inside (-0.3, 0.4), 1 above; Σ = 1.1, scaled by 1/√4
    assert quantizer.alpha.grad.item() == pytest.approx(0.55)
    assert quantizer.beta.grad.item() == pytest.approx(-2.0)


def test_elastic_uniform_gradients(elastic_path):
    quantizer = fixed(ElasticUniform(bits=2, value_set="signed"), alpha=1.0, unsigned=False)
    x = torch.tensor([-3.0, -0.4, 0.6, 2.0], requires_grad=True)  # codes -2..1
    out = quantizer(x)
    assert out.tolist() == [-2.0, 0.0, 1.0, 1.0]
    out.backward(torch.ones(4))
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    # dα: Qn = -2, 0.4, 0.4, Qp = 1 -> Σ = -0.2, scaled by 1/√(4 · 1); dβ: 1 outside the range
    assert quantizer.alpha.grad.item() == pytest.approx(-0.1)
    assert quantizer.beta.grad.item() == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("make", "x", "unsigned", "alpha"),
    [
        (lambda: ElasticBinary(bits=1), [0.0, 1.0, 3.0], True, 4 * 4 / 3),
        (lambda: ElasticBinary(bits=1), [-1.0, 1.0, 4.0], False, 2 * 2.0),
        (lambda: ElasticUniform(bits=4), [-1.0, 2.0], False, 2 * 1.5 / math.sqrt(7)),
        (lambda: ElasticUniform(bits=4), [1.0, 2.0], True, 4 * 1.5 / math.sqrt(15)),
    ],
)
def test_alpha_initialised_from_first_batch(make, x, unsigned, alpha, elastic_path):
    quantizer = make()
    quantizer(torch.tensor(x))
    assert bool(quantizer.unsigned) is unsigned
    assert quantizer.alpha.item() == pytest.approx(alpha, rel=1e-6)
    quantizer(100 * torch.tensor(x))  # a one-off
    assert quantizer.alpha.item() == pytest.approx(alpha, rel=1e-6)


def test_keep_zeros_leaves_padding_zero(elastic_path):
    quantizer = fixed(ElasticBinary(bits=1, keep_zeros=True), alpha=1.0, unsigned=False)
    assert quantizer(torch.tensor([0.0, -0.3, 0.2])).tolist() == [0.0, -1.0, 1.0]


ELASTIC_CASES = [
    (ElasticUniform, bits, value_set, keep_zeros)
    for bits in (2, 4, 8)
    for value_set in ("signed", "unsigned")
    for keep_zeros in (False, True)
] + [(ElasticBinary, 1, value_set, keep) for value_set in ("signed", "unsigned") for keep in (0, 1)]


def _alpha_beta_sums(quantizer, x, grad):
    """(exact sum, its terms) of α's gradient, then of β's, from their definitions in float64."""
    alpha, beta = quantizer.alpha.item(), quantizer.beta.item()
    u = ((x - beta) / alpha).double()  # as both paths compute it, in float32
    g = grad.double().masked_fill(x == 0, 0.0) if quantizer.keep_zeros else grad.double()
    lo, hi = quantizer.levels()
    if isinstance(quantizer, ElasticBinary) and not bool(quantizer.unsigned):
        q, outside = torch.where(u >= 0, 1.0, -1.0).double(), u.abs() > 1
        d_alpha = q * g
    else:
        q, outside = torch.round(u).clamp(lo, hi), (u < lo) | (u > hi)
        d_alpha = torch.where(outside, q, q - u) * g
    add_beta = isinstance(quantizer, ElasticUniform)
    d_beta = g * outside if add_beta else -g * ~outside
    scale = 1.0 / math.sqrt(x.numel() * (hi if add_beta else 1))
    return [(float(d_alpha.sum()) * scale, d_alpha * scale), (float(d_beta.sum()), d_beta)]


def _quantize_and_backward(quantizer, x, grad):
    x = x.clone().requires_grad_(True)
    quantizer.zero_grad()
    out = quantizer(x)
    out.backward(grad)
    return out.detach(), x.grad, quantizer.alpha.grad.clone(), quantizer.beta.grad.clone()


@pytest.mark.parametrize(("cls", "bits", "value_set", "keep_zeros"), ELASTIC_CASES)
@pytest.mark.parametrize("shape", [(3, 7, 40), (2, 150, 160)])  # one thread; over 2^15: threads
def test_fused_elastic_kernel_equals_pytorch_ops(
    cls, bits, value_set, keep_zeros, shape, elastic_kernel, monkeypatch
):
    quantizer = cls(bits=bits, value_set=value_set, keep_zeros=bool(keep_zeros))
    generator = torch.Generator().manual_seed(bits + len(value_set) + keep_zeros)
    x = 2 * torch.randn(shape, generator=generator)
    x = x.abs() if value_set == "unsigned" else x
    x[0, :3] = 0.0  # exact zeros (padding)
    x[1, 0, :4] = torch.tensor([0.5, 1.5, -0.5, 2.5])  # ties of round(u) when α = 1
    grad = torch.randn(shape, generator=generator)
    quantizer(x)  # α from this batch, then a shift and a round α so that the ties stay ties
    with torch.no_grad():
        quantizer.alpha.fill_(1.0 if bits > 1 else float(quantizer.alpha))
        quantizer.beta.fill_(0.0 if bits > 1 else 0.1)
    fused = _quantize_and_backward(quantizer, x, grad)
    monkeypatch.setitem(cpu_kernels._enabled, "value", False)
    ops = _quantize_and_backward(quantizer, x, grad)
    assert torch.equal(fused[0], ops[0]), "outputs differ"
    assert torch.equal(fused[1], ops[1]), "input gradients differ"
    # α and β: both against the sums of the definitions taken in float64. The PyTorch ops reach
    # β's as Σg − Σ_inside g in float32 (a cancellation), the kernel sums the terms directly.
    for index, (want, terms) in zip((2, 3), _alpha_beta_sums(quantizer, x, grad), strict=True):
        tolerance = 1e-6 * float(terms.abs().sum()) + 1e-7
        assert abs(float(fused[index]) - want) <= tolerance, ("kernel", fused[index], want)
        cancellation = 1e-6 * float(grad.abs().sum())  # float32 error of the ops' Σg − Σg
        assert abs(float(ops[index]) - want) <= tolerance + cancellation, ("ops", ops[index])


def test_fused_elastic_kernel_serves_only_fp32_cpu_inputs(elastic_kernel):
    quantizer = ElasticUniform(bits=4, value_set="signed")
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    out = quantizer(x)  # float64: the PyTorch ops
    assert out.dtype == torch.float64 and out.grad_fn.name() != "_FusedElasticFnBackward"
    assert quantizer(x.float()).grad_fn.name() == "_FusedElasticFnBackward"
    transposed = torch.randn(8, 5).t()  # not contiguous: copied, same values
    with torch.no_grad():
        want = quantizer.reference(transposed, quantizer.alpha.clamp(min=1e-5))
    assert torch.equal(quantizer(transposed).detach(), want)


def test_failed_elastic_kernel_build_falls_back_with_one_warning(monkeypatch):
    def broken_build():
        raise RuntimeError("Error building extension 'sbext_elastic_quant_cpu': no compiler")

    builds = []
    monkeypatch.setattr(ELASTIC_KERNEL, "build", lambda: builds.append(1) or broken_build())
    for key, value in (("tried", False), ("module", None), ("error", None)):
        monkeypatch.setattr(ELASTIC_KERNEL, key, value)  # restored to the real build after
    monkeypatch.setitem(cpu_kernels._enabled, "value", None)
    monkeypatch.delenv(cpu_kernels.DISABLE_ENV, raising=False)
    quantizer = fixed(ElasticUniform(bits=2, value_set="signed"), alpha=1.0, unsigned=False)
    x = torch.tensor([-3.0, -0.4, 0.6, 2.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = quantizer(x), quantizer(x)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "PyTorch ops" in messages[0] and "no compiler" in messages[0]
    assert builds == [1] and isinstance(ELASTIC_KERNEL.error, RuntimeError)
    assert first.tolist() == second.tolist() == [-2.0, 0.0, 1.0, 1.0]
    assert first.grad_fn.name() != "_FusedElasticFnBackward"


def test_elastic_kernel_source_ships_with_the_package():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["speechbrain_ext.quant"]
    relative = ELASTIC_KERNEL.source.relative_to(root / "speechbrain_ext" / "quant")
    assert ELASTIC_KERNEL.source.exists() and any(relative.match(p) for p in patterns)


def test_registry_lists_quantizers_and_rejects_unknown():
    assert {"bwn", "uniform", "elastic_binary", "elastic_uniform"} <= set(QUANTIZERS.names())
    with pytest.raises(KeyError, match="valid names: bwn"):
        QUANTIZERS.build("ternary", bits=2)
    with pytest.raises(ValueError, match="1 bit"):
        BWNWeight(bits=2)


def test_pack_codes_round_trip_every_width():
    for bits in (1, 2, 4, 8):
        codes = torch.randint(0, 2**bits, (37,), dtype=torch.uint8)
        packed = pack_codes(codes, bits=bits)
        assert packed.numel() == math.ceil(37 * bits / 8)
        assert torch.equal(unpack_codes(packed, bits=bits, count=37), codes)


# ---------------------------------------------------------------- every encoder and mixer
MIXER_OPTIONS = {
    "sparse": {"stride": 4},
    "hypermixing": {"hypernet_size": 16},
    "mamba": {"d_state": 4},
}
ENCODER_CASES = [
    ("transformer", {"mixer": name, "mixer_options": MIXER_OPTIONS.get(name, {})})
    for name in list_mixers()
] + [
    (
        "transformer",
        {"mixer": "mhsa", "pos_conv": True, "pos_conv_kernel": 8, "pos_conv_groups": 4},
    ),
    ("conformer", {"mixer": "mhsa", "mixer_options": {"position": "relative"}, "kernel_size": 7}),
    (
        "conformer",
        {"mixer": "sparse", "mixer_options": {"pattern": "fixed", "stride": 4, "num_summary": 2}},
    ),
    (
        "squeezeformer",
        {
            "mixer": "mhsa",
            "mixer_options": {"position": "rotary"},
            "kernel_size": 7,
            "num_layers": 4,
        },
    ),
]
ENCODER_IDS = [
    f"{kind}-{opts['mixer']}" + ("-pos_conv" if opts.get("pos_conv") else "")
    for kind, opts in ENCODER_CASES
]
ENCODER_IDS = [f"{i}-{n}" for n, i in enumerate(ENCODER_IDS)]
FLOAT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def encoder_source(kind, options):
    opts = {"num_layers": 1, "d_model": D_MODEL, "nhead": NHEAD, "d_ffn": 32, "dropout": 0.0}
    opts.update(options)
    if kind != "transformer":
        opts.setdefault("kernel_size", 7)
    return {"type": "encoder", "name": kind, "options": opts}


def padded_batch(lengths=(12, 9, 5), scale=10.0):
    x = torch.randn(len(lengths), max(lengths), D_MODEL)
    mask = lengths_to_padding_mask(torch.tensor(lengths))
    return torch.where(mask.unsqueeze(-1), scale * torch.randn_like(x), x), mask


def float_layers_left(model):
    from speechbrain_ext.nnet.mixers.hypermixing import ParallelMLP
    from speechbrain_ext.nnet.mixers.summarymixing import GroupedLinear

    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, (*FLOAT_LAYERS, GroupedLinear, ParallelMLP))
        and not isinstance(m, QuantLayerMixin)
    ]


@pytest.mark.parametrize("spec", ["w1a1", "w2a8"])
@pytest.mark.parametrize(("kind", "options"), ENCODER_CASES, ids=ENCODER_IDS)
def test_encoder_quantizes_trains_and_round_trips(kind, options, spec, tmp_path):
    source = encoder_source(kind, options)
    model = quantize_model(build_encoder(source["name"], **source["options"]), spec)
    assert float_layers_left(model) == []
    x, mask = padded_batch()
    initialize_quantizers(model, x, key_padding_mask=mask)

    # One optimiser step: finite loss, gradients reach the latent weights and every α / β.
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-2)
    out = model(x, key_padding_mask=mask)[-1]
    loss = out[~mask].square().mean()
    assert torch.isfinite(loss)
    loss.backward()
    for name, module in model.named_modules():
        if isinstance(module, QuantLayerMixin):
            for pname in module.weight_quantizers:
                if parametrize.is_parametrized(module, pname):  # weight norm: the originals
                    grad = module.parametrizations[pname].original1.grad
                else:
                    grad = getattr(module, pname).grad
                assert grad is not None and grad.abs().sum() > 0, f"{name}.{pname}"
    scales = [(n, p) for n, p in model.named_parameters() if n.endswith((".alpha", ".beta"))]
    assert scales
    for name, param in scales:
        assert param.grad is not None and torch.isfinite(param.grad), name
    # α always learns; a k-bit β only from clipped values (LSQ+), so only 1-bit β must move.
    moving = [(n, p) for n, p in scales if n.endswith(".alpha") or spec.endswith("a1")]
    assert sum(bool(p.grad != 0) for _, p in moving) >= 0.8 * len(moving)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser.step()
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())

    # Packed and loaded: identical outputs.
    model.eval()
    sizes = pack_model(model, tmp_path, source=source)
    assert sizes["packed_quantized"] < sizes["fp32_quantized"]
    loaded = load_packed(tmp_path)
    with torch.no_grad():
        expected = model(x, key_padding_mask=mask)
        got = loaded(x, key_padding_mask=mask)
    for a, b in zip(expected, got):
        # Bitwise on the AVX2 machine; on an AVX-512 one the rebuilt model's GEMMs can take
        # another kernel for one layer (squeezeformer + mhsa) and differ in the last bit.
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.fixture
def float64():
    """Run a test in float64. A binarizer turns a 1-ulp difference at its threshold into a
    full flip, and a padded batch and an utterance alone are computed by GEMMs of other shapes
    (other summation orders, per machine): in float32 such flips happen, in float64 the
    differences stay far below any threshold gap, so what is tested is the masking itself."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("spec", ["w1a1", "w4a8"])
@pytest.mark.parametrize("name", list_mixers())
def test_quantized_mixer_padding_invariance(name, spec, float64):
    mixer = build_mixer(name, d_model=D_MODEL, nhead=NHEAD, **MIXER_OPTIONS.get(name, {}))
    mixer = quantize_model(mixer, spec)
    clean, _ = padded_batch(scale=0.0)
    initialize_quantizers(mixer, clean)  # α from a batch without padding (a one-off)
    x, mask = padded_batch(scale=1e3)
    x.requires_grad_(True)
    batched = mixer(x, key_padding_mask=mask)
    assert torch.isfinite(batched).all()
    for b, length in enumerate((12, 9, 5)):
        alone = mixer(x[b : b + 1, :length].detach())
        torch.testing.assert_close(batched[b, :length], alone[0], atol=1e-5, rtol=1e-5)
    batched.masked_fill(mask.unsqueeze(-1), 0.0).sum().backward()
    assert x.grad[mask].abs().max() == 0


def test_quantized_conformer_padding_invariance(float64):
    source = encoder_source("conformer", ENCODER_CASES[-3][1])
    model = quantize_model(build_encoder(source["name"], **source["options"]), "w1a1").eval()
    clean, _ = padded_batch(scale=0.0)
    initialize_quantizers(model, clean)
    x, mask = padded_batch(scale=1e3)
    batched = model(x, key_padding_mask=mask)[-1]
    for b, length in enumerate((12, 9, 5)):
        alone = model(x[b : b + 1, :length])[-1]
        torch.testing.assert_close(batched[b, :length], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
def test_quantized_sparse_equals_dense_masked_quantized_attention(pattern, float64):
    from speechbrain_ext.nnet.mixers.sparse import sparse_attention_mask

    mixer = build_mixer("sparse", d_model=D_MODEL, nhead=NHEAD, pattern=pattern, stride=4)
    mixer = quantize_model(mixer, "w1a1").eval()
    x, mask = padded_batch(scale=0.0)
    initialize_quantizers(mixer, x)
    with torch.no_grad():
        out = mixer(x)
        batch, time, _ = x.shape
        qkv = mixer.in_proj(x).view(batch, time, 3, NHEAD, D_MODEL // NHEAD)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        allowed = sparse_attention_mask(time, pattern=pattern, stride=4, num_summary=4)
        ref = mixer.attention_quantizer(q, k, v, attn_mask=allowed)
        ref = mixer.out_proj(ref.transpose(1, 2).reshape(batch, time, D_MODEL))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- specs, checkpoints, bits
def test_keep_and_only_leave_modules_fp32():
    source = encoder_source(*ENCODER_CASES[-3])
    model = quantize_model(
        build_encoder(source["name"], **source["options"]), "w1a1,keep=layers.0.conv|*.ffn1"
    )
    from speechbrain_ext.nnet.convolution import ChannelsLastConv1d

    assert type(model.layers[0].conv.depthwise) is ChannelsLastConv1d  # the FP32 layer, kept
    assert type(model.layers[0].ffn1.linear1) is nn.Linear
    assert isinstance(model.layers[0].ffn2.linear1, QuantLinear)
    only = quantize_model(
        build_encoder(source["name"], **source["options"]), {"bits": "w1a1", "only": ["*.conv"]}
    )
    assert isinstance(only.layers[0].conv.depthwise, QuantConv1d)
    assert type(only.layers[0].ffn1.linear1) is nn.Linear
    assert only.layers[0].mixer.attention_quantizer is None
    assert set(quantized_bits(only)) == {
        "layers.0.conv.pointwise1",
        "layers.0.conv.depthwise",
        "layers.0.conv.pointwise2",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("w3a1", "weight bits must be one of"),
        ("w1a5", "activation bits must be one of"),
        ("int8", "expected fp32 or w<B>a<B>"),
        ("w1a1,kep=ffn", "unknown option 'kep'"),
        ("w1a1,keep", "'keep' in quantization spec 'w1a1,keep' is not key=value"),
        ("w1a1,attention=maybe", "attention='maybe'"),
        ("w1a1,weights=ternary", "unknown quantizer"),
        ({"keep": ["ffn"]}, "has no 'bits' key"),
        ('{"bits": "w1a1",', "not valid JSON"),
    ],
)
def test_bad_specs_name_the_bad_part(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_keep_pattern_matching_nothing_is_an_error():
    mixer = build_mixer("mhsa", d_model=D_MODEL, nhead=NHEAD)
    with pytest.raises(ValueError, match="keep pattern 'in_projj' .* matches no module"):
        quantize_model(mixer, "w1a1,keep=in_projj")


def test_spec_label_round_trips():
    for text in [
        "w1a1",
        "fp32",
        "w4a8,keep=a|b.c,attention=off",
        "w1a2,only=*.ffn,acts=elastic_uniform",
    ]:
        assert parse_spec(parse_spec(text).label) == parse_spec(text)


def test_fp32_checkpoint_loads_into_quantized_student():
    source = encoder_source(*ENCODER_CASES[-4])  # transformer with weight-normalised pos_conv
    teacher = build_encoder(source["name"], **source["options"]).eval()
    student = quantize_model(build_encoder(source["name"], **source["options"]), "w1a1")
    load_fp32_state_dict(student, teacher.state_dict())
    for key, value in teacher.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key
    same = quantize_model(copy.deepcopy(teacher), "fp32")
    x = torch.randn(2, 7, D_MODEL)
    assert torch.equal(same(x)[-1], teacher(x)[-1])
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(student, "w1a1")


def test_storage_counts_one_bit_per_binarized_weight():
    layer = quantize_model(nn.Sequential(nn.Linear(64, 32)), "w1a1")
    # 2048 one-bit weights + scale + mean; bias 32 floats; α and β
    assert quantized_storage_bytes(layer) == 2048 / 8 + 8 + 32 * 4 + 8


# ---------------------------------------------------------------- real 1-bit models on disk
@pytest.mark.parametrize("preset", ["conformer_s", "sparseformer_dn_s"])
def test_pack_command_study_a_preset_is_25_times_smaller(preset, tmp_path, capsys):
    from speechbrain_ext.quant.cli import main

    sizes = main(
        ["pack", preset, "--spec", "w1a1", "--out", str(tmp_path), "--calibrate-seconds", "0.4"]
    )
    assert "quantized weights" in capsys.readouterr().out
    assert sizes["packed_quantized"] * 25 <= sizes["fp32_quantized"]
    assert sizes["packed_total"] < sizes["fp32_total"]
    assert sizes["packed_quantized"] == (tmp_path / "quantized.bin").stat().st_size
    # The loaded model is the packed one: same outputs.
    torch.manual_seed(0)
    model = quantize_model(build_encoder(preset, dropout=0.0), "w1a1")
    initialize_quantizers(model, torch.randn(1, 20, model.d_model))
    loaded = load_packed(tmp_path)
    assert loaded.quant_spec == "w1a1"
    x = torch.randn(1, 9, model.d_model)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[-1], loaded(x)[-1])


def test_pack_refuses_uninitialised_quantizers(tmp_path):
    model = quantize_model(build_mixer("fastformer", d_model=D_MODEL, nhead=NHEAD), "w1a1")
    with pytest.raises(ValueError, match="initialize_quantizers"):
        pack_model(model, tmp_path, source={"type": "encoder", "name": "x"})


def test_pack_command_bestrq_output_folder(tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_ext.quant.cli import main
    from speechbrain_ext.ssl.export import load_bestrq_model, save_model_config
    from speechbrain_ext.ssl.model import build_bestrq_model

    trained = build_bestrq_model(
        "conformer",
        num_layers=1,
        d_model=16,
        nhead=2,
        mixer="fastformer",
        kernel_size=7,
        codebook_size=16,
        front_end="conv",
        dropout=0.0,
        front_end_dropout=0.0,
    )
    save_model_config(trained, tmp_path / "run")
    Checkpointer(tmp_path / "run" / "save", {"model": trained}).save_checkpoint()
    main(
        [
            "pack",
            str(tmp_path / "run"),
            "--spec",
            "w1a2,keep=encoder.features",
            "--out",
            str(tmp_path / "packed"),
            "--calibrate-seconds",
            "0.5",
        ]
    )
    loaded = load_packed(tmp_path / "packed")
    from speechbrain_ext.quant.layers import QuantConv2d

    assert isinstance(loaded.encoder.front_end.conv.convblock_0.convs.conv_0.conv, QuantConv2d)
    assert isinstance(loaded.head, QuantLinear)
    torch.manual_seed(0)
    reference = quantize_model(load_bestrq_model(tmp_path / "run"), "w1a2,keep=encoder.features")
    initialize_quantizers(reference, torch.randn(1, 8000), torch.ones(1))
    wavs = torch.randn(2, 6000)
    with torch.no_grad():
        for a, b in zip(
            reference.eval().encode(wavs, torch.tensor([1.0, 0.7])),
            loaded.encode(wavs, torch.tensor([1.0, 0.7])),
        ):
            assert torch.equal(a, b)


# ---------------------------------------------------------------- XNOR-popcount kernel
def sign_product(a, w):
    return (torch.where(a >= 0, 1.0, -1.0) @ torch.where(w >= 0, 1.0, -1.0).T).to(torch.int32)


@pytest.mark.parametrize("k", [1, 63, 64, 65, 200])
def test_xnor_torch_equals_float_product_of_signs_exactly(k):
    from speechbrain_ext.quant.xnor import pack_signs, popcount64, xnor_matmul

    a, w = torch.randn(70, k), torch.randn(9, k)
    out = xnor_matmul(pack_signs(a), pack_signs(w), k=k, backend="torch")
    assert out.dtype == torch.int32 and torch.equal(out, sign_product(a, w))
    words = torch.tensor([0, 1, -1, -(2**63), 2**63 - 1, 0x0F0F], dtype=torch.int64)
    assert popcount64(words).tolist() == [0, 1, 64, 1, 63, 8]


def test_xnor_cpp_kernel_equals_torch_path_or_warns_once(monkeypatch):
    from speechbrain_ext.quant import xnor

    module = xnor.cpp_kernel()  # built on first use (cached by torch_extensions)
    a, w = torch.randn(37, 130), torch.randn(11, 130)
    if module is not None:
        assert torch.equal(
            xnor.xnor_matmul(xnor.pack_signs(a), xnor.pack_signs(w), k=130, backend="cpp"),
            sign_product(a, w),
        )
        assert torch.equal(xnor.pack_signs(a, shift=0.3, backend="cpp"), xnor.pack_signs(a - 0.3))
    # Without a compiler: one warning, then the PyTorch path.
    monkeypatch.setattr(xnor, "_CPP_MODULE", None)
    monkeypatch.setattr(xnor, "_CPP_FAILED", False)
    monkeypatch.setattr(
        "torch.utils.cpp_extension.load_inline",
        lambda **kwargs: (_ for _ in ()).throw(OSError("no compiler")),
    )
    with pytest.warns(RuntimeWarning, match="no compiler"):
        first = xnor.xnor_matmul(xnor.pack_signs(a), xnor.pack_signs(w), k=130)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = xnor.xnor_matmul(xnor.pack_signs(a), xnor.pack_signs(w), k=130)
    assert torch.equal(first, second) and torch.equal(first, sign_product(a, w))


def test_xnor_linear_matches_binarized_layer():
    from speechbrain_ext.quant.xnor import XnorLinear

    layer = QuantLinear(100, 12, weight_bits=1, act_bits=1)
    x = torch.randn(4, 6, 100)
    with torch.no_grad():
        layer(x)
        layer.input_quantizers["input"].beta.fill_(0.1)
        expected = layer(x)
        got = XnorLinear(layer, backend="torch")(x)
        compiled = XnorLinear(layer, backend="auto")(x)  # the C++ kernel, if it built
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="w1a1"):
        XnorLinear(QuantLinear(8, 4, weight_bits=2, act_bits=8))


# ---------------------------------------------------------------- profile reads the bits
def test_profile_reads_bits_from_a_quantized_model():
    from speechbrain_ext.bench.flops import w1a1
    from speechbrain_ext.bench.profile import profile_model

    encoder = build_encoder("transformer", num_layers=2, d_model=D_MODEL, nhead=NHEAD, d_ffn=32)
    x = torch.randn(1, 20, D_MODEL)
    fp32 = profile_model(encoder, (x,), name="t")
    assumed = profile_model(encoder, (x,), name="t", bit_widths=w1a1())
    student = quantize_model(copy.deepcopy(encoder), "w1a1")
    quantized = profile_model(student, (x,), name="t")
    assert quantized["precision"] == "w1a1"
    assert quantized["gmac"] == pytest.approx(fp32["gmac"])
    assert quantized["gbop"] == pytest.approx(assumed["gbop"])  # every MAC at 1 x 1 bit
    assert quantized["gflop"] == 0.0
    assert quantized["storage_mb"] == round(quantized_storage_bytes(student) / 1e6, 4)
    assert quantized["storage_mb"] < assumed["storage_mb"] * 1.2
    kept = quantize_model(copy.deepcopy(encoder), "w4a8,keep=layers.1")
    row = profile_model(kept, (x,), name="t")
    assert assumed["gbop"] < row["gbop"] < fp32["gbop"]
    assert 0 < row["gflop"] < fp32["gflop"]


def test_profile_command_quant_option(tmp_path, capsys):
    from speechbrain_ext.bench.profile import main

    args = ["conformer_s", "--frontend", "none", "--seconds", "0.2", "--out", str(tmp_path)]
    rows = main([*args, "--quant", "w1a1,keep=layers.0"])
    assert rows[0]["precision"] == "w1a1,keep=layers.0"
    assert (tmp_path / "profile_conformer_s_w1a1_keep_layers.0.md").exists()
    assumed = main([*args, "--bits", "w1a1"])
    assert rows[0]["gbop"] > assumed[0]["gbop"]  # layer 0 stays FP32


# ---------------------------------------------------------------- error propagation command
def test_errors_command_writes_tables_and_fewer_bits_err_more(tmp_path):
    from speechbrain_ext.corpus.espeak import EspeakUnavailableError, get_espeak
    from speechbrain_ext.quant.cli import main
    from speechbrain_ext.quant.errors import GROUPS

    try:
        get_espeak()
    except EspeakUnavailableError:
        pytest.skip("eSpeak NG is not available")
    common = ["errors", "--encoders", "conformer_s", "--seconds", "0.5"]
    binary = main([*common, "--out", str(tmp_path / "w1a1")])
    eight = main([*common, "--bits", "w8a8", "--out", str(tmp_path / "w8a8")])
    for name in ("quant_errors.csv", "quant_errors.md", "quant_errors.png"):
        assert (tmp_path / "w1a1" / name).stat().st_size > 0
    assert {r["group"] for r in binary} == set(GROUPS)
    assert max(r["layer"] for r in binary) == 16
    last = {r["group"]: r for r in binary if r["layer"] == 16}
    last8 = {r["group"]: r for r in eight if r["layer"] == 16}
    assert all(-1.0 <= r["cosine"] <= 1.0 and r["rel_error"] > 0 for r in binary)
    assert last8["everything"]["rel_error"] < 0.5 * last["everything"]["rel_error"]


def test_errors_command_on_a_trained_model_and_its_distilled_student(tmp_path):
    """--models / --students: a saved HuBERT model and a quantized "student" folder. A student
    that is the FP32 model itself has zero error after distillation, and the table says the
    weights are trained, not random."""
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_ext.corpus.espeak import EspeakUnavailableError, get_espeak
    from speechbrain_ext.quant.cli import main
    from speechbrain_ext.ssl.export import save_model_config
    from speechbrain_ext.ssl.hubert_model import build_hubert_model

    try:
        get_espeak()
    except EspeakUnavailableError:
        pytest.skip("eSpeak NG is not available")
    torch.manual_seed(0)
    model = build_hubert_model(
        "conformer_s", num_layers=2, d_model=32, nhead=4, d_ffn=64, extractor_channels=16,
        num_classes=8, final_dim=16, dropout=0.0, input_dropout=0.0,
    )  # fmt: skip
    for name in ("fp32", "same"):
        save_model_config(model, tmp_path / name)
        Checkpointer(tmp_path / name / "save", {"model": model}).save_checkpoint()
    args = ["errors", "--encoders", "none", "--seconds", "0.5", "--out", str(tmp_path / "out")]
    rows = main(
        [*args, "--models", f"tiny={tmp_path / 'fp32'}", "--students", f"tiny={tmp_path / 'same'}"]
    )
    groups = {r["group"] for r in rows}
    assert "everything" in groups and "everything, after distillation" in groups
    assert {r["weights"] for r in rows} == {"trained"} and max(r["layer"] for r in rows) == 2
    after = [r for r in rows if r["group"] == "everything, after distillation"]
    before = [r for r in rows if r["group"] == "everything"]
    assert all(r["rel_error"] == 0.0 and r["cosine"] > 0.9999 for r in after)
    assert all(r["rel_error"] > 0.01 for r in before)
    text = (tmp_path / "out" / "quant_errors.md").read_text()
    assert "Trained models" in text and "random initial weights" not in text
    with pytest.raises(ValueError, match="no --models entry"):
        main([*args, "--students", f"tiny={tmp_path / 'same'}"])
