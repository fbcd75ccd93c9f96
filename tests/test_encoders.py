"""Encoders: one contract for every kind × a set of mixers, presets, and the conv blocks.

The contract tests run the Transformer around every registered mixer and the Conformer and
Squeezeformer around a few (tiny sizes: d_model 32, T <= 40). Preset tests build every preset
on the meta device and hold Study B's parameter counts to the study's figures.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.convolution import (
    ConvModule,
    DepthwiseSeparableSubsampling,
    MaskedBatchNorm1d,
    TimeReduction,
)
from speechbrain_ext.nnet.encoders import (
    build_encoder,
    list_encoders,
    list_presets,
    preset_config,
)
from speechbrain_ext.nnet.encoders.__main__ import main as presets_main
from speechbrain_ext.nnet.encoders.presets import (
    STUDY_FIGURES,
    bestrq_extra_parameters,
    count_parameters,
    squeezeformer_xs_with_front_end_parameters,
)
from speechbrain_ext.nnet.feedforward import FeedForward, get_activation
from speechbrain_ext.nnet.masking import lengths_to_padding_mask
from speechbrain_ext.nnet.mixers import list_mixers

D_MODEL, NHEAD = 32, 4
LENGTHS = [40, 33, 5]  # odd lengths exercise the Squeezeformer's rate halving
MIXERS = list_mixers()

KIND_OPTIONS = {
    "transformer": {"num_layers": 2, "pos_conv": True, "pos_conv_kernel": 16, "pos_conv_groups": 4},
    "conformer": {"num_layers": 2, "kernel_size": 7},
    "squeezeformer": {"num_layers": 4, "kernel_size": 7},  # U-Net on: blocks 1-2 at half rate
}
# The Transformer around every mixer; the conv encoders around a few, with both conv norms.
FEW = [
    ("mhsa", {"mixer_options": {"position": "relative"}}),
    ("mamba", {"conv_norm": "layernorm"}),
    ("fastformer", {"conv_norm": "layernorm"}),
]
CASES = [("transformer", mixer, {}) for mixer in MIXERS] + [
    (kind, mixer, options)
    for kind in ("conformer", "squeezeformer")
    for mixer, options in (FEW[:2] if kind == "conformer" else FEW[::2])
    if mixer in MIXERS
]
CASES += [(kind, MIXERS[0], {}) for kind in list_encoders() if kind not in KIND_OPTIONS]
IDS = [f"{kind}-{mixer}" + ("-ln" if "conv_norm" in opts else "") for kind, mixer, opts in CASES]


def make(kind, mixer, options, **overrides):
    config = dict(d_model=D_MODEL, nhead=NHEAD, mixer=mixer, dropout=0.0)
    config.update(KIND_OPTIONS.get(kind, {"num_layers": 2}))
    config.update(options)
    config.update(overrides)
    return build_encoder(kind, **config)


def padded_batch(lengths=LENGTHS, scale=1e3, extra=0):
    """Random batch whose padded frames hold large random values; also its mask."""
    time = max(lengths) + extra
    x = torch.randn(len(lengths), time, D_MODEL)
    mask = lengths_to_padding_mask(torch.tensor(lengths), max_len=time)
    return torch.where(mask.unsqueeze(-1), scale * torch.randn_like(x), x), mask


def uses_batchnorm(encoder):
    return any(isinstance(module, MaskedBatchNorm1d) for module in encoder.modules())


def assert_matches_alone(encoder, x, mask, lengths, atol=1e-5):
    outputs = encoder(x, key_padding_mask=mask)
    for row, length in enumerate(lengths):
        alone = encoder(x[row : row + 1, :length])
        for layer, (batched, single) in enumerate(zip(outputs, alone)):
            torch.testing.assert_close(
                batched[row, :length],
                single[0],
                atol=atol,
                rtol=0,
                msg=lambda m, r=row, i=layer: f"utterance {r}, layer {i}: {m}",
            )


# ------------------------------------------------------------------ contract, every case
@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
def test_shapes_and_attributes(kind, mixer, options):
    encoder = make(kind, mixer, options)
    x, mask = padded_batch()
    outputs = encoder(x, key_padding_mask=mask)
    assert (
        encoder.num_layers
        == len(outputs)
        == KIND_OPTIONS.get(kind, {"num_layers": 2})["num_layers"]
    )
    assert encoder.d_model == D_MODEL
    assert all(out.shape == x.shape for out in outputs)
    assert all(torch.isfinite(out[~mask]).all() for out in outputs)
    # No mask at all works too and equals an all-valid mask.
    full = encoder(x[:1])
    masked = encoder(x[:1], key_padding_mask=torch.zeros(1, x.shape[1], dtype=torch.bool))
    torch.testing.assert_close(full[-1], masked[-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
def test_padding_invariance_eval(kind, mixer, options):
    encoder = make(kind, mixer, options).eval()
    x, mask = padded_batch()
    with torch.no_grad():
        assert_matches_alone(encoder, x, mask, LENGTHS)


@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
def test_padding_invariance_train(kind, mixer, options):
    """Training mode, dropout 0: padding never leaks into valid frames.

    Without BatchNorm every utterance equals itself run alone. With (masked) BatchNorm the
    batch statistics depend on the batch mates by design, so the check is that the valid
    outputs ignore the padded frames' content and the amount of padding.
    """
    encoder = make(kind, mixer, options).train()
    x, mask = padded_batch()
    if not uses_batchnorm(encoder):
        assert_matches_alone(encoder, x, mask, LENGTHS)
        return
    more_x, more_mask = padded_batch(extra=7)
    more_x[:, : x.shape[1]] = torch.where(mask.unsqueeze(-1), -x, x)  # other garbage, more pad
    reference = encoder(x, key_padding_mask=mask)
    other = encoder(more_x, key_padding_mask=more_mask)
    for ref, out in zip(reference, other):
        torch.testing.assert_close(out[:, : x.shape[1]][~mask], ref[~mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
def test_gradients_reach_every_parameter(kind, mixer, options):
    encoder = make(kind, mixer, options).train()
    x, mask = padded_batch()
    outputs = encoder(x, key_padding_mask=mask)
    weights = torch.randn(len(outputs), D_MODEL)
    loss = sum((out[~mask] * w).sum() for out, w in zip(outputs, weights))
    loss.backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
def test_deterministic_under_seed(kind, mixer, options):
    x, mask = padded_batch()
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        encoder = make(kind, mixer, options).eval()
        with torch.no_grad():
            results.append(encoder(x, key_padding_mask=mask))
    for first, second in zip(*results):
        assert torch.equal(first, second)


@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
def test_bf16_forward_is_finite(kind, mixer, options):
    encoder = make(kind, mixer, options, dtype=torch.bfloat16).eval()
    assert all(p.dtype == torch.bfloat16 for p in encoder.parameters())
    x, mask = padded_batch(scale=10.0)
    with torch.no_grad():
        outputs = encoder(x.bfloat16(), key_padding_mask=mask)
    assert all(out.dtype == torch.bfloat16 for out in outputs)
    assert all(torch.isfinite(out[~mask]).all() for out in outputs)


@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_zero_length_input_gives_empty_outputs(kind, mixer, options, with_mask):
    encoder = make(kind, mixer, options).eval()
    x = torch.randn(2, 0, D_MODEL, requires_grad=True)
    mask = torch.zeros(2, 0, dtype=torch.bool) if with_mask else None
    outputs = encoder(x, key_padding_mask=mask)
    assert len(outputs) == encoder.num_layers
    assert all(out.shape == (2, 0, D_MODEL) for out in outputs)
    sum(out.sum() for out in outputs).backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(("kind", "mixer", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_padding_never_reaches_valid_frames(kind, mixer, options, bad):
    """Eval: each utterance equals itself alone. Train (batch norm statistics, convolutions
    over padding): the valid outputs equal those of the same batch with finite padding."""
    encoder = make(kind, mixer, options).eval()
    x, mask = padded_batch()
    poisoned = x.masked_fill(mask.unsqueeze(-1), bad)
    with torch.no_grad():
        assert_matches_alone(encoder, poisoned, mask, LENGTHS)
    encoder.train()
    reference = encoder(x, key_padding_mask=mask)
    poisoned.requires_grad_(True)
    outputs = encoder(poisoned, key_padding_mask=mask)
    for ref, out in zip(reference, outputs):
        assert torch.isfinite(out[~mask]).all()
        torch.testing.assert_close(out[~mask], ref[~mask], atol=1e-5, rtol=0)
    sum(out[~mask].sum() for out in outputs).backward()
    assert torch.isfinite(poisoned.grad).all()


def test_every_kind_is_covered():
    assert {kind for kind, _, _ in CASES} == set(list_encoders())
    assert {mixer for kind, mixer, _ in CASES if kind == "transformer"} == set(MIXERS)


# ------------------------------------------------------------------ Squeezeformer U-Net
@pytest.mark.parametrize(("num_layers", "unet"), [(2, None), (3, None), (5, (1, 4))])
def test_squeezeformer_small_layer_counts(num_layers, unet):
    encoder = make("squeezeformer", MIXERS[0], {}, num_layers=num_layers).eval()
    reduce_idx, recovery_idx = unet or (None, None)
    assert (encoder.time_reduce_idx, encoder.time_recovery_idx) == (reduce_idx, recovery_idx)
    x, mask = padded_batch()
    with torch.no_grad():
        outputs = encoder(x, key_padding_mask=mask)
        assert len(outputs) == num_layers
        assert all(out.shape == x.shape for out in outputs)
        for index, out in enumerate(outputs):
            at_half_rate = unet is not None and reduce_idx <= index < recovery_idx
            pairs_equal = torch.equal(out[:, 0:40:2], out[:, 1:40:2])
            assert pairs_equal == at_half_rate, f"block {index}"
        assert_matches_alone(encoder, x, mask, LENGTHS)


def test_squeezeformer_default_unet_matches_the_paper():
    encoder = build_encoder("squeezeformer_xs", device="meta")
    assert (encoder.time_reduce_idx, encoder.time_recovery_idx) == (7, 15)


def test_squeezeformer_unet_options():
    off = make("squeezeformer", MIXERS[0], {}, num_layers=6, unet=False)
    assert off.time_reduction is None and off.time_reduce_idx is None
    custom = make("squeezeformer", MIXERS[0], {}, time_reduce_idx=1, time_recovery_idx=4)
    assert (custom.time_reduce_idx, custom.time_recovery_idx) == (1, 4)  # restored at the end
    x, mask = padded_batch()
    assert_matches_alone(custom.eval(), x, mask, LENGTHS)
    with pytest.raises(ValueError, match="time_reduce_idx"):
        make("squeezeformer", MIXERS[0], {}, time_reduce_idx=3, time_recovery_idx=2)
    with pytest.raises(ValueError, match="both"):
        make("squeezeformer", MIXERS[0], {}, time_reduce_idx=1)


# ------------------------------------------------------------------ presets
@pytest.mark.parametrize("name", list_presets())
def test_every_preset_builds_on_meta(name):
    config = preset_config(name)
    if config.get("mixer", "mhsa") not in MIXERS:
        pytest.skip(f"mixer {config['mixer']!r} is not registered")
    encoder = build_encoder(name, device="meta")
    assert encoder.num_layers == config["num_layers"]
    assert encoder.d_model == config["d_model"]
    assert sum(p.numel() for p in encoder.parameters()) > 0
    assert name in STUDY_FIGURES


STUDY_B = [name for name in list_presets() if STUDY_FIGURES[name]["study"] == "B"]


@pytest.mark.parametrize("name", STUDY_B)
def test_study_b_parameter_counts(name):
    """Encoder + BEST-RQ front end and head (estimated) vs the study's ~95 M / ~315 M.

    Within 3 % for every mixer: the widths are the study's parameter-matched ones, and the
    mixers follow the layouts the study used (RelPosMHAXL, hypernetworks as wide as the FFN,
    SummaryMixing's projections split into nhead blocks).
    """
    config = preset_config(name)
    total = count_parameters(name) + bestrq_extra_parameters(config["d_model"])
    ratio = total / (STUDY_FIGURES[name]["params_m"] * 1e6)
    assert abs(ratio - 1) <= 0.03, f"{name}: {total / 1e6:.1f} M, ratio {ratio:.3f}"


def test_hubert_base_matches_torchaudio():
    """Same parameter count as the real HuBERT-base encoder (pos conv + 12 layers + LN)."""
    if "mhsa" not in MIXERS:
        pytest.skip("mhsa is not registered")
    torchaudio = pytest.importorskip("torchaudio")
    with torch.device("meta"):
        reference = torchaudio.models.hubert_base().encoder.transformer
    expected = sum(p.numel() for p in reference.parameters())
    assert expected == 89_775_488
    assert count_parameters("hubert_base_transformer") == expected


def test_squeezeformer_xs_matches_its_paper():
    """Kim et al. (2022): Squeezeformer-XS (×4 front end + encoder) has 9.0 M parameters."""
    if "mhsa" not in MIXERS:
        pytest.skip("mhsa is not registered")
    total = squeezeformer_xs_with_front_end_parameters(n_input=80)
    assert abs(total / 9.0e6 - 1) <= 0.02, total


def test_preset_overrides_take_effect():
    encoder = build_encoder(
        "bestrq_large_mhsa",
        num_layers=2,
        d_model=48,
        nhead=2,
        mixer=MIXERS[0],
        mixer_options={},
        d_ffn=64,
        device="meta",
    )
    assert (encoder.num_layers, encoder.d_model, encoder.nhead) == (2, 48, 2)
    assert len(encoder.layers) == 2
    layer = encoder.layers[0]
    assert type(layer.mixer).__name__ == type(_mixer_module(MIXERS[0])).__name__
    assert layer.ffn1.linear1.out_features == 64
    assert layer.norm_out.normalized_shape == (48,)


def _mixer_module(name):
    from speechbrain_ext.nnet.mixers import build_mixer

    return build_mixer(name, d_model=8, nhead=2)


def test_unknown_names_list_valid_ones():
    with pytest.raises(KeyError, match="conformer.*bestrq_base_mhsa"):
        build_encoder("conformr")
    with pytest.raises(KeyError, match="valid presets: .*squeezeformer_xs"):
        preset_config("squeezeformer_xxs")
    with pytest.raises(KeyError, match="valid names: .*" + MIXERS[0]):
        build_encoder("transformer", num_layers=1, d_model=8, nhead=2, mixer="nope")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="d_model"):
        build_encoder("transformer", num_layers=1, d_model=0, nhead=2, mixer=MIXERS[0])
    with pytest.raises(ValueError, match="num_layers"):
        build_encoder("conformer", num_layers=0, d_model=8, nhead=2, mixer=MIXERS[0])
    with pytest.raises(ValueError, match="dropout"):
        build_encoder("conformer", num_layers=1, d_model=8, nhead=2, dropout=1.5)
    with pytest.raises(ValueError, match="conv norm"):
        make("conformer", MIXERS[0], {}, conv_norm="groupnorm")
    with pytest.raises(ValueError, match="kernel_size"):
        make("conformer", MIXERS[0], {}, kernel_size=4)
    with pytest.raises(ValueError, match="activation"):
        make("transformer", MIXERS[0], {}, activation="swishh")
    with pytest.raises(TypeError, match="rejected options"):
        make("transformer", MIXERS[0], {}, mixer_options={"no_such_option": 1})
    encoder = make("transformer", MIXERS[0], {})
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.randn(2, 5, D_MODEL + 1))
    with pytest.raises(ValueError, match="bool"):
        encoder(torch.randn(2, 5, D_MODEL), key_padding_mask=torch.zeros(2, 5))


def test_presets_command_writes_the_table(tmp_path, capsys):
    target = tmp_path / "presets.md"
    presets_main(["--markdown", str(target)])
    text = target.read_text()
    assert text in capsys.readouterr().out
    for name in list_presets():
        assert f"`{name}`" in text
    assert "89.78" in text  # HuBERT-base encoder, 89,775,488 parameters


# ------------------------------------------------------------------ building blocks
def test_masked_batchnorm_equals_batchnorm_on_valid_frames():
    x, mask = padded_batch()
    masked = MaskedBatchNorm1d(D_MODEL, momentum=0.3)
    plain = torch.nn.BatchNorm1d(D_MODEL, momentum=0.3)
    with torch.no_grad():
        masked.weight.normal_(), masked.bias.normal_()
    plain.load_state_dict(masked.state_dict())
    out = masked(x, key_padding_mask=mask)
    torch.testing.assert_close(out[~mask], plain(x[~mask]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    masked.eval(), plain.eval()
    torch.testing.assert_close(masked(x)[~mask], plain(x[~mask]), atol=1e-5, rtol=1e-5)


def test_conv_module_zeroes_padding_before_the_depthwise_conv():
    conv = ConvModule(d_model=D_MODEL, kernel_size=7, norm="layernorm").eval()
    x, mask = padded_batch()
    out = conv(x, key_padding_mask=mask)
    for row, length in enumerate(LENGTHS):
        alone = conv(x[row : row + 1, :length])
        torch.testing.assert_close(out[row, :length], alone[0], atol=1e-5, rtol=0)


def test_time_reduction_and_subsampling_are_padding_invariant():
    reduce = TimeReduction(d_model=D_MODEL)
    x, mask = padded_batch()
    low, low_mask = reduce(x, key_padding_mask=mask)
    assert low.shape[1] == 20 and (~low_mask).sum(1).tolist() == [20, 17, 3]
    for row, length in enumerate(LENGTHS):
        alone, _ = reduce(x[row : row + 1, :length])
        torch.testing.assert_close(low[row][~low_mask[row]], alone[0], atol=1e-5, rtol=0)

    sub = DepthwiseSeparableSubsampling(n_input=20, d_model=D_MODEL, channels=8)
    feats = torch.randn(2, 40, 20)
    feats_mask = lengths_to_padding_mask(torch.tensor([40, 23]))
    feats = feats.masked_fill(feats_mask.unsqueeze(-1), 1e3)
    out, out_mask = sub(feats, key_padding_mask=feats_mask)
    alone, _ = sub(feats[1:, :23])
    assert (~out_mask).sum(1).tolist() == [9, alone.shape[1]]
    torch.testing.assert_close(out[1][~out_mask[1]], alone[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="too few"):
        sub(torch.randn(1, 5, 20))


def test_feedforward_and_activations():
    ffn = FeedForward(d_model=4, d_ffn=8, activation="relu")
    x = torch.randn(2, 3, 4)
    expected = ffn.linear2(F.relu(ffn.linear1(x)))
    torch.testing.assert_close(ffn(x), expected)
    assert isinstance(get_activation("swish"), torch.nn.SiLU)
    with pytest.raises(ValueError, match="valid names"):
        get_activation("nope")


@pytest.mark.parametrize(
    "options",
    [
        {"kernel_size": 31, "padding": 15, "groups": 24},  # the Conformer's depthwise
        {"kernel_size": 5, "stride": 2, "padding": 2, "groups": 24},  # Squeezeformer's reduction
        {"kernel_size": 8, "padding": 4, "groups": 4},  # HuBERT's grouped positional conv
        {"kernel_size": 3, "padding": 2, "dilation": 2, "groups": 1, "bias": False},
    ],
)
def test_channels_last_conv1d_equals_conv1d_outputs_and_gradients(options):
    from speechbrain_ext.nnet.convolution import ChannelsLastConv1d

    torch.manual_seed(0)
    reference = nn.Conv1d(24, 24, **options)
    fast = ChannelsLastConv1d(24, 24, **options)
    fast.load_state_dict(reference.state_dict())  # the same state dict
    for layout in ("time-major view", "contiguous"):
        x = torch.randn(3, 37, 24, requires_grad=True)  # (batch, time, channels)
        inputs = x.transpose(1, 2)
        if layout == "contiguous":
            inputs = inputs.contiguous()
        out, ref = fast(inputs), reference(inputs)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        grads = torch.autograd.grad(out.square().sum(), [x, *fast.parameters()])
        ref_grads = torch.autograd.grad(ref.square().sum(), [x, *reference.parameters()])
        for grad, ref_grad in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(grad, ref_grad, atol=1e-4, rtol=1e-4)
