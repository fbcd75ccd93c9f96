"""Token mixers: the same contract for every registered mixer, plus per-mixer correctness.

The contract tests are parametrised over ``list_mixers()`` (plus a few option variants), so a
newly registered mixer is checked without editing this file.
"""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from speechbrain_ext.nnet.masking import lengths_to_padding_mask
from speechbrain_ext.nnet.mixers import build_mixer, list_mixers
from speechbrain_ext.nnet.mixers.sparse import sparse_attention_mask
from speechbrain_ext.nnet.positional import relative_sinusoidal_embedding

D_MODEL, NHEAD = 32, 4
LENGTHS = [40, 33, 5]  # the stride-32 sparse default gets a partial second block

VARIANTS = {
    "mhsa": [{"position": "rotary"}, {"position": "relative"}],
    "fastformer": [{"share_qv": False}],
    "hypermixing": [{"tied": True, "hypernet_size": 16}],
    "sparse": [
        {"pattern": "strided", "stride": 6},
        {"pattern": "fixed", "stride": 6, "num_summary": 2},
    ],
    "summarymixing": [{"local_dims": [48, 16], "summary_dims": [24]}],
}
CASES = [(name, {}) for name in list_mixers()] + [
    (name, options)
    for name, variants in VARIANTS.items()
    if name in list_mixers()
    for options in variants
]
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in CASES]


def make(name, options, **extra):
    return build_mixer(name, d_model=D_MODEL, nhead=NHEAD, **options, **extra)


def padded_batch(lengths=LENGTHS, scale=1e3):
    """Random batch whose padded frames hold large random values; also its mask."""
    x = torch.randn(len(lengths), max(lengths), D_MODEL)
    mask = lengths_to_padding_mask(torch.tensor(lengths))
    garbage = scale * torch.randn_like(x)
    return torch.where(mask.unsqueeze(-1), garbage, x), mask


class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (bytes) any operator returns while active."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self.nbytes = max(self.nbytes, item.untyped_storage().nbytes())
        return out


def largest_allocation(mixer, time, d_model=16):
    x = torch.randn(1, time, d_model)
    mask = lengths_to_padding_mask(torch.tensor([time - 3]), max_len=time)
    with torch.no_grad(), LargestAllocation() as tracker:
        mixer(x, key_padding_mask=mask)
    return tracker.nbytes


# ---------------------------------------------------------------- contract, every mixer
@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_output_shape(name, options):
    mixer = make(name, options)
    x, mask = padded_batch()
    assert mixer(x, key_padding_mask=mask).shape == x.shape
    assert mixer(x[:, :7]).shape == (len(LENGTHS), 7, D_MODEL)
    assert mixer(x[:1, :1]).shape == (1, 1, D_MODEL)


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_padding_invariance(name, options):
    mixer = make(name, options).eval()
    x, mask = padded_batch()
    x.requires_grad_(True)
    batched = mixer(x, key_padding_mask=mask)
    assert torch.isfinite(batched).all()
    for b, length in enumerate(LENGTHS):
        alone = mixer(x[b : b + 1, :length].detach())
        torch.testing.assert_close(batched[b, :length], alone[0], atol=1e-5, rtol=1e-5)
    # Nothing flows back into padded inputs from valid outputs.
    batched.masked_fill(mask.unsqueeze(-1), 0.0).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[mask].abs().max() == 0


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_fully_padded_utterance_is_finite(name, options):
    mixer = make(name, options).eval()
    x, mask = padded_batch([12, 9])
    mask[1] = True
    out = mixer(x, key_padding_mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], mixer(x[:1])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_gradients_reach_every_parameter(name, options):
    mixer = make(name, options)
    x, mask = padded_batch()
    out = mixer(x, key_padding_mask=mask)
    weights = torch.randn_like(out)
    (out * weights)[~mask].sum().backward()
    for pname, param in mixer.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {pname}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_deterministic_under_seed(name, options):
    x, mask = padded_batch()
    outputs, states = [], []
    for _ in range(2):
        torch.manual_seed(123)
        mixer = make(name, options, dropout=0.1).train()
        torch.manual_seed(7)
        outputs.append(mixer(x, key_padding_mask=mask))
        states.append(mixer.state_dict())
    assert torch.equal(outputs[0], outputs[1])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_bf16_forward_on_cpu(name, options):
    mixer = make(name, options).to(torch.bfloat16).eval()
    x, mask = padded_batch(scale=10.0)
    out = mixer(x.to(torch.bfloat16), key_padding_mask=mask)
    assert out.dtype == torch.bfloat16
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_zero_length_input_gives_empty_output(name, options, with_mask):
    """Every mixer maps (batch, 0, d_model) to an empty (batch, 0, d_model), mask or not."""
    mixer = make(name, options).eval()
    x = torch.randn(2, 0, D_MODEL, requires_grad=True)
    mask = torch.zeros(2, 0, dtype=torch.bool) if with_mask else None
    out = mixer(x, key_padding_mask=mask)
    assert out.shape == (2, 0, D_MODEL)
    assert out.dtype == x.dtype
    out.sum().backward()  # an empty batch must not break the backward pass either
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_padding_never_reaches_valid_frames(name, options, bad):
    """ "Whatever the padded frames contain" includes NaN and inf (NaN * 0 is NaN)."""
    mixer = make(name, options).eval()
    x, mask = padded_batch()
    x = x.masked_fill(mask.unsqueeze(-1), bad).requires_grad_(True)
    batched = mixer(x, key_padding_mask=mask)
    assert torch.isfinite(batched[~mask]).all(), f"{name}: {bad} in padding reached valid frames"
    for b, length in enumerate(LENGTHS):
        alone = mixer(x[b : b + 1, :length].detach())
        torch.testing.assert_close(batched[b, :length], alone[0], atol=1e-5, rtol=1e-5)
    batched[~mask].sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[mask].abs().max() == 0


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError) as error:
        build_mixer("no_such_mixer", d_model=D_MODEL, nhead=NHEAD)
    for name in list_mixers():
        assert name in str(error.value)


def test_expected_mixers_are_registered():
    expected = {
        "mhsa",
        "fastformer",
        "hypermixing",
        "summarymixing",
        "summarymixing_lite",
        "sparse",
        "performer",
    }
    assert expected <= set(list_mixers())


OWN = ["mhsa", "fastformer", "hypermixing", "summarymixing", "sparse", "performer"]


@pytest.mark.parametrize("name", OWN)
def test_bad_input_gives_clear_errors(name):
    mixer = make(name, {})
    with pytest.raises(ValueError, match="batch, time, 32"):
        mixer(torch.randn(2, 5, 16))
    with pytest.raises(TypeError, match="bool"):
        mixer(torch.randn(2, 5, 32), key_padding_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="does not match"):
        mixer(torch.randn(2, 5, 32), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("mhsa", {"nhead": 5}, "not divisible"),
        ("mhsa", {"position": "absolute"}, "unknown mhsa position"),
        ("sparse", {"pattern": "random"}, "unknown sparse attention pattern"),
        ("sparse", {"pattern": "fixed", "stride": 4, "num_summary": 5}, "num_summary"),
        ("hypermixing", {"hypernet_size": 6}, "multiple of nhead"),
    ],
)
def test_bad_options_give_clear_errors(name, options, message):
    options = {"nhead": NHEAD, **options}
    with pytest.raises(ValueError, match=message):
        build_mixer(name, d_model=D_MODEL, **options)


# ---------------------------------------------------------------- MHSA
def split_qkv(mixer, x):
    batch, time, _ = x.shape
    qkv = mixer.in_proj(x).view(batch, time, 3, mixer.nhead, mixer.head_dim)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (batch, head, time, head_dim)


def naive_rotary(x):
    """RoPE as complex rotation of channel pairs (c, c + d/2)."""
    time, dim = x.shape[-2], x.shape[-1]
    freqs = 10000.0 ** (-torch.arange(0, dim, 2).double() / dim)
    rotation = torch.polar(
        torch.ones(time, dim // 2).double(), torch.outer(torch.arange(time), freqs)
    )
    pairs = torch.complex(x[..., : dim // 2].double(), x[..., dim // 2 :].double()) * rotation
    return torch.cat([pairs.real, pairs.imag], dim=-1).float()


def naive_attention(q, k, v, mask, bias=None):
    """Loop over batch and head; explicit masked softmax. ``mask`` (b, keys) or (b, q, keys)."""
    if mask.dim() == 2:
        mask = mask.unsqueeze(1)
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            scores = q[b, h] @ k[b, h].T / math.sqrt(q.shape[-1])
            if bias is not None:
                scores = scores + bias[b, h]
            scores = scores.masked_fill(mask[b], float("-inf"))
            out[b, h] = torch.softmax(scores, dim=-1) @ v[b, h]
    return out


@pytest.mark.parametrize("position", [None, "rotary"])
def test_mhsa_matches_naive_softmax_attention(position):
    mixer = make("mhsa", {"position": position})
    x, mask = padded_batch()
    q, k, v = split_qkv(mixer, x)
    if position == "rotary":
        q, k = naive_rotary(q), naive_rotary(k)
    ref = naive_attention(q, k, v, mask).transpose(1, 2).reshape(x.shape)
    ref = mixer.out_proj(ref)
    out = mixer(x, key_padding_mask=mask)
    torch.testing.assert_close(out[~mask], ref[~mask], atol=1e-5, rtol=1e-5)


def test_mhsa_matches_torch_multihead_attention():
    mixer = make("mhsa", {})
    for param in mixer.parameters():  # non-zero biases too
        torch.nn.init.normal_(param, std=0.2)
    torch_mha = torch.nn.MultiheadAttention(D_MODEL, NHEAD, batch_first=True)
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(mixer.in_proj.weight)
        torch_mha.in_proj_bias.copy_(mixer.in_proj.bias)
        torch_mha.out_proj.weight.copy_(mixer.out_proj.weight)
        torch_mha.out_proj.bias.copy_(mixer.out_proj.bias)
    x, mask = padded_batch(scale=1.0)
    ref, _ = torch_mha(x, x, x, key_padding_mask=mask, need_weights=False)
    out = mixer(x, key_padding_mask=mask)
    torch.testing.assert_close(out[~mask], ref[~mask], atol=1e-5, rtol=1e-5)


def test_mhsa_relative_matches_speechbrain_relposmhaxl():
    from speechbrain.nnet.attention import RelPosMHAXL

    mixer = make("mhsa", {"position": "relative", "bias": False})
    theirs = RelPosMHAXL(D_MODEL, NHEAD)
    head_dim = D_MODEL // NHEAD
    # SpeechBrain scales scores by 1/sqrt(d_model); scale q, u, v so that ours match.
    c = math.sqrt(D_MODEL / head_dim)
    w_q, w_k, w_v = mixer.in_proj.weight.detach().chunk(3)
    per_head = [w.view(NHEAD, head_dim, D_MODEL) for w in (w_q * c, w_k, w_v)]
    with torch.no_grad():
        # SpeechBrain's packed weight is [q, k, v] per head; its biases are viewed flat.
        theirs.in_proj_weight.copy_(torch.stack(per_head, 1).reshape(3 * D_MODEL, D_MODEL))
        theirs.out_proj.weight.copy_(mixer.out_proj.weight)
        theirs.out_proj.bias.zero_()
        theirs.linear_pos.weight.copy_(mixer.linear_pos.weight)
        theirs.pos_bias_u.copy_((mixer.pos_bias_u * c).reshape(head_dim, NHEAD))
        theirs.pos_bias_v.copy_((mixer.pos_bias_v * c).reshape(head_dim, NHEAD))
    x, mask = padded_batch()
    time = x.shape[1]
    pos_embs = relative_sinusoidal_embedding(time, D_MODEL).unsqueeze(0)
    ref, _ = theirs(x, x, x, pos_embs, key_padding_mask=mask)
    out = mixer(x, key_padding_mask=mask)
    torch.testing.assert_close(out[~mask], ref[~mask], atol=1e-5, rtol=1e-5)


def test_relative_position_bias_depends_on_distance_only():
    mixer = make("mhsa", {"position": "relative"})
    q = torch.randn(1, NHEAD, 1, D_MODEL // NHEAD).expand(1, NHEAD, 9, -1)  # same q everywhere
    bias = mixer._relative_bias(q)[0, 0]  # (time, time)
    for i in range(8):
        torch.testing.assert_close(bias[i + 1, 1:], bias[i, :-1])  # constant along diagonals
    assert not torch.allclose(bias[4, 3], bias[4, 5])  # i - j = 1 differs from i - j = -1


@pytest.mark.parametrize("position", [None, "rotary", "relative"])
def test_mhsa_attention_weights(position):
    mixer = make("mhsa", {"position": position})
    x, mask = padded_batch()
    weights = mixer.attention_weights(x, key_padding_mask=mask)
    assert weights.shape == (len(LENGTHS), NHEAD, x.shape[1], x.shape[1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert weights.masked_select(mask[:, None, None, :]).abs().max() == 0
    q, k, v = split_qkv(mixer, x)
    del q, k
    out = mixer.out_proj((weights @ v).transpose(1, 2).reshape(x.shape))
    torch.testing.assert_close(
        mixer(x, key_padding_mask=mask)[~mask], out[~mask], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("position", [None, "rotary", "relative"])
def test_mhsa_memory(position):
    time, nhead = 512, 2
    mixer = build_mixer("mhsa", d_model=16, nhead=nhead, position=position)
    largest = largest_allocation(mixer, time)
    one_map = time * time * 4  # one (time, time) float32 map
    if position is None or position == "rotary":
        assert largest < one_map / 8  # fused path: no (time, time) tensor
    else:
        # The (T, 2T-1) position scores per head, and no (time, time, head_dim) tensor.
        assert largest <= nhead * time * (2 * time - 1) * 4


# ---------------------------------------------------------------- Fastformer
def naive_fastformer(mixer, x, lengths):
    """The REFERENCE equations, frame by frame and head by head, on each valid prefix."""
    dh, heads = mixer.head_dim, mixer.nhead
    out = torch.zeros_like(x)
    for b, length in enumerate(lengths):
        proj = mixer.in_proj(x[b, :length]).view(length, -1, heads, dh)
        q, k = proj[:, 0], proj[:, 1]
        v = q if mixer.share_qv else proj[:, 2]
        u = torch.zeros(length, heads, dh)
        for h in range(heads):
            alpha = torch.softmax(
                torch.stack([mixer.w_alpha[h] @ q[t, h] / math.sqrt(dh) for t in range(length)]), 0
            )
            global_q = sum(alpha[t] * q[t, h] for t in range(length))
            p = [global_q * k[t, h] for t in range(length)]
            beta = torch.softmax(
                torch.stack([mixer.w_beta[h] @ p[t] / math.sqrt(dh) for t in range(length)]), 0
            )
            global_k = sum(beta[t] * p[t] for t in range(length))
            for t in range(length):
                u[t, h] = global_k * v[t, h]
        out[b, :length] = mixer.out_proj(u.reshape(length, -1)) + q.reshape(length, -1)
    return out


@pytest.mark.parametrize("share_qv", [True, False])
def test_fastformer_matches_naive_loop(share_qv):
    mixer = make("fastformer", {"share_qv": share_qv})
    lengths = [9, 4]
    x, mask = padded_batch(lengths)
    ref = naive_fastformer(mixer, x, lengths)
    out = mixer(x, key_padding_mask=mask)
    torch.testing.assert_close(out[~mask], ref[~mask], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- HyperMixing
@pytest.mark.parametrize("tied", [False, True])
def test_hypermixing_matches_speechbrain(tied):
    from speechbrain.nnet.hypermixing import HyperMixing as SpeechBrainHyperMixing

    mixer = make("hypermixing", {"hypernet_size": 16, "tied": tied})
    theirs = SpeechBrainHyperMixing(D_MODEL, 16, tied=tied, num_heads=NHEAD, max_length=64)
    ours_gens = [mixer.w1_gen] + ([] if tied else [mixer.w2_gen])
    their_gens = [theirs.hyper.w1_gen] + ([] if tied else [theirs.hyper.w2_gen])
    with torch.no_grad():
        for ours, gen in zip(ours_gens, their_gens):
            gen.fc1_weights.copy_(ours.weight1.transpose(1, 2))
            gen.fc1_biases.copy_(ours.bias1.squeeze(1))
            gen.fc2_weights.copy_(ours.weight2.transpose(1, 2))
            gen.fc2_biases.copy_(ours.bias2.squeeze(1))
        theirs.layer_norm.load_state_dict(mixer.norm.state_dict())
    x, mask = padded_batch()
    ref, _ = theirs(x, x, x, key_padding_mask=mask)
    out = mixer(x, key_padding_mask=mask)
    torch.testing.assert_close(out[~mask], ref[~mask], atol=1e-5, rtol=1e-5)


def test_hypermixing_memory_is_linear_in_time():
    mixer = build_mixer("hypermixing", d_model=16, nhead=2)
    ratio = largest_allocation(mixer, 1024) / largest_allocation(mixer, 256)
    assert ratio <= 4.5


# ---------------------------------------------------------------- SummaryMixing
@pytest.mark.parametrize("name", ["summarymixing", "summarymixing_lite"])
def test_summarymixing_matches_naive(name):
    mixer = make(name, {})
    lengths = [7, 3]
    x, mask = padded_batch(lengths)
    out = mixer(x, key_padding_mask=mask)
    for b, length in enumerate(lengths):
        frames = [x[b, t] for t in range(length)]
        mean = sum(mixer.summary_proj(f) for f in frames) / length
        summary = mixer.summary_norm(mean)
        for t, frame in enumerate(frames):
            parts = [summary]
            if name == "summarymixing":
                parts.insert(0, mixer.local_norm(mixer.local_proj(frame)))
            ref = mixer.combine(torch.cat(parts))
            torch.testing.assert_close(out[b, t], ref, atol=1e-5, rtol=1e-5)
    assert out[mask].abs().max() == 0


# ---------------------------------------------------------------- Sparse attention
def test_sparse_pattern_mask():
    strided = sparse_attention_mask(20, pattern="strided", stride=4)
    assert strided[10, 7] and strided[10, 13] and not strided[10, 15] and strided[10, 2]
    assert torch.equal(strided, strided.T)
    fixed = sparse_attention_mask(20, pattern="fixed", stride=4, num_summary=1)
    # own block 8..11, plus the last frame of every block: 3, 7, 15, 19
    assert fixed[9].nonzero().flatten().tolist() == [3, 7, 8, 9, 10, 11, 15, 19]


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize(
    ("lengths", "stride", "num_summary"),
    [([37, 20], 5, 2), ([12, 12], 4, 1), ([5, 3], 8, 3), ([30, 1], 3, 3), ([64, 50], 8, 8)],
)
def test_sparse_matches_dense_masked_attention(pattern, lengths, stride, num_summary):
    mixer = make("sparse", {"pattern": pattern, "stride": stride, "num_summary": num_summary})
    x, mask = padded_batch(lengths)
    q, k, v = split_qkv(mixer, x)
    allowed = sparse_attention_mask(
        x.shape[1], pattern=pattern, stride=stride, num_summary=num_summary
    )
    ref = naive_attention(q, k, v, mask.unsqueeze(1) | ~allowed)
    ref = mixer.out_proj(ref.transpose(1, 2).reshape(x.shape))
    out = mixer(x, key_padding_mask=mask)
    torch.testing.assert_close(out[~mask], ref[~mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
def test_sparse_memory_grows_slower_than_quadratic(pattern):
    """Largest tensor with stride √T: ~T^1.5 growth (x8 from T=256 to 1024, dense: x16)."""
    sizes = {}
    for time, stride in [(256, 16), (1024, 32)]:
        mixer = build_mixer(
            "sparse", d_model=16, nhead=2, pattern=pattern, stride=stride, num_summary=2
        )
        sizes[time] = largest_allocation(mixer, time)
    dense_scores = 2 * 1024 * 1024 * 4  # (head, time, time) float32 at T = 1024
    assert sizes[1024] < dense_scores / 6
    assert sizes[1024] / sizes[256] < 10


# ---------------------------------------------------------------- Performer
def test_performer_approximates_softmax_attention():
    lengths = [20, 12]
    x, mask = padded_batch(lengths, scale=1.0)
    x = 0.5 * x
    errors = {}
    for num_features in (8, 4096):
        torch.manual_seed(0)
        mixer = make("performer", {"num_features": num_features})
        q, k, v = split_qkv(mixer, x)
        ref = mixer.out_proj(naive_attention(q, k, v, mask).transpose(1, 2).reshape(x.shape))
        out = mixer(x, key_padding_mask=mask)
        errors[num_features] = (out - ref)[~mask].abs().mean() / ref[~mask].abs().mean()
    assert errors[4096] < 0.05
    assert errors[4096] < errors[8] / 3


def test_performer_memory_is_linear_in_time():
    mixer = build_mixer("performer", d_model=16, nhead=2)
    ratio = largest_allocation(mixer, 1024) / largest_allocation(mixer, 256)
    assert ratio <= 4.5


def test_performer_redraw_changes_features():
    mixer = make("performer", {})
    before = mixer.projection.clone()
    mixer.redraw_features(torch.Generator().manual_seed(3))
    assert not torch.equal(before, mixer.projection)
    # Rows within a block of head_dim features are orthogonal.
    block = mixer.projection[: mixer.head_dim]
    gram = block @ block.T
    torch.testing.assert_close(
        gram - torch.diag(gram.diagonal()), torch.zeros_like(gram), atol=1e-4, rtol=0
    )
