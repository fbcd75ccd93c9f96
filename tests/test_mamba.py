import importlib.util
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speechbrain_ext.nnet import cpu_kernels
from speechbrain_ext.nnet import selective_scan as scan_module
from speechbrain_ext.nnet.masking import lengths_to_padding_mask
from speechbrain_ext.nnet.mixers import build_mixer, list_mixers
from speechbrain_ext.nnet.mixers.mamba import (
    BidirectionalMamba,
    MambaBlock,
    kernels_available,
    reverse_valid_index,
)
from speechbrain_ext.nnet.selective_scan import (
    selective_scan_chunked,
    selective_scan_fused_cpu,
    selective_scan_reference,
)

selective_scan = selective_scan_chunked  # the tests below written for the chunked scan

ROOT = Path(__file__).resolve().parents[1]


def scan_inputs(batch, time, d_inner, d_state, *, delta_shift=-2.0, device="cpu"):
    """Random scan inputs (leaf tensors requiring grad), A perturbed around -(1..N)."""
    x = torch.randn(batch, time, d_inner, device=device)
    delta = F.softplus(torch.randn(batch, time, d_inner, device=device) + delta_shift)
    log_a = torch.log(torch.arange(1.0, d_state + 1)).repeat(d_inner, 1)
    A = -torch.exp(log_a + 0.1 * torch.randn(d_inner, d_state)).to(device)
    B = torch.randn(batch, time, d_state, device=device)
    C = torch.randn(batch, time, d_state, device=device)
    D = torch.randn(d_inner, device=device)
    return [t.requires_grad_() for t in (x, delta, A, B, C, D)]


def outputs_and_grads(function, inputs, weight):
    y = function(*inputs)
    grads = torch.autograd.grad((y * weight).sum(), inputs)
    return y, grads


def assert_scans_agree(inputs, chunk_size, atol=1e-5, rtol=1e-5):
    y_ref = selective_scan_reference(*inputs)
    weight = torch.randn_like(y_ref)
    y_ref, g_ref = outputs_and_grads(selective_scan_reference, inputs, weight)
    y, g = outputs_and_grads(lambda *a: selective_scan(*a, chunk_size=chunk_size), inputs, weight)
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=rtol)
    for name, got, want in zip("x delta A B C D".split(), g, g_ref):
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=f"gradient of {name}")


@pytest.mark.parametrize(
    "batch, time, d_inner, d_state, chunk_size",
    [
        (2, 37, 8, 4, 16),  # not divisible by the chunk
        (1, 50, 6, 5, 7),
        (3, 12, 5, 3, 1),  # one frame per chunk
        (2, 5, 3, 2, 64),  # one chunk longer than the sequence
        (2, 64, 4, 4, 32),  # divisible
    ],
)
def test_chunked_scan_matches_reference(batch, time, d_inner, d_state, chunk_size):
    assert_scans_agree(scan_inputs(batch, time, d_inner, d_state), chunk_size)


def test_chunked_scan_long_sequence_with_large_steps():
    # Large steps: Σ_t Δ_t |A| reaches thousands, where exp(-cumsum) tricks overflow in fp32.
    inputs = scan_inputs(1, 2000, 4, 4, delta_shift=0.5)
    delta, A = inputs[1], inputs[2]
    assert (delta.detach()[0].sum(0)[:, None] * A.detach().abs()).min() > 1000
    assert_scans_agree(inputs, chunk_size=32)


def test_chunked_scan_default_chunk_and_bfloat16():
    inputs = [t.detach() for t in scan_inputs(2, 40, 6, 4)]
    y = selective_scan(*inputs)
    torch.testing.assert_close(y, selective_scan_reference(*inputs), atol=1e-5, rtol=1e-5)
    low = selective_scan(*(t.bfloat16() for t in inputs))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), y, atol=0.1, rtol=0.05)


def test_scan_errors_name_the_argument():
    x, delta, A, B, C, D = (t.detach() for t in scan_inputs(1, 6, 4, 3))
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(x, delta, A, B[..., :2], C, D)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_reference(x, delta, A[:2], B, C, D)
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(x, delta, A, B, C, D, chunk_size=0)


def test_registered_and_parameter_layout():
    assert "mamba" in list_mixers()
    mixer = build_mixer("mamba", d_model=474, nhead=8)
    assert isinstance(mixer, BidirectionalMamba)
    block = mixer.forward_block
    assert block.d_inner == 948 and block.dt_rank == 30
    assert block.conv1d.weight.shape == (948, 1, 4)
    assert block.x_proj.weight.shape == (30 + 32, 948)
    torch.testing.assert_close(block.A_log[3], torch.log(torch.arange(1.0, 17)))
    assert torch.all(block.D == 1)
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    # Two independent directions, twice one block's parameters.
    assert mixer.backward_block is not None
    assert not torch.equal(mixer.backward_block.in_proj.weight, block.in_proj.weight)
    per_block = sum(p.numel() for p in block.parameters())
    assert sum(p.numel() for p in mixer.parameters()) == 2 * per_block == 2914152


def test_padding_invariance_with_garbage():
    mixer = BidirectionalMamba(d_model=12, d_state=4)
    lengths = torch.tensor([9, 4, 1])
    x = torch.randn(3, 9, 12)
    mask = lengths_to_padding_mask(lengths, 9)
    garbage = x.masked_fill(mask[..., None], 1e4)
    garbage[1, 6] = float("nan")
    out = mixer(garbage, key_padding_mask=mask)
    assert torch.all(out[mask] == 0)
    for row, length in enumerate(lengths.tolist()):
        alone = mixer(x[row : row + 1, :length])
        torch.testing.assert_close(out[row : row + 1, :length], alone, atol=1e-5, rtol=1e-5)


def test_backward_direction_starts_at_each_utterance_end():
    mixer = BidirectionalMamba(d_model=8, d_state=4)
    with torch.no_grad():  # keep only the right-to-left direction
        mixer.forward_block.out_proj.weight.zero_()
        mixer.backward_block.conv1d.bias.fill_(2.0)  # zero frames leave a clear trace
        mixer.backward_block.dt_proj.bias.fill_(0.5)
    x = torch.randn(2, 7, 8)
    mask = lengths_to_padding_mask(torch.tensor([7, 4]), 7)
    out = mixer(x, key_padding_mask=mask)
    # Row 1 alone, through the backward block on its own reversed valid part.
    expected = mixer.backward_block(x[1:, :4].flip(1)).flip(1)
    torch.testing.assert_close(out[1:, :4], expected, atol=1e-6, rtol=1e-6)
    # The last valid frame is where the backward scan starts: it sees only itself.
    first_step = mixer.backward_block(x[1:, 3:4])
    torch.testing.assert_close(out[1:, 3:4], first_step, atol=1e-6, rtol=1e-6)
    # A global flip would start in the (zeroed) padding: off by far more than the tolerance.
    global_flip = mixer.backward_block(x[1:].masked_fill(mask[1:, :, None], 0).flip(1)).flip(1)
    assert (global_flip[:, :4] - expected).abs().max() > 1e-2


def test_reverse_valid_index_and_bad_masks():
    mask = lengths_to_padding_mask(torch.tensor([3, 5, 0]), 5)
    index = reverse_valid_index(mask)
    assert index.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]
    x = torch.randn(3, 5, 2)
    twice = x.gather(1, index[..., None].expand_as(x)).gather(1, index[..., None].expand_as(x))
    assert torch.equal(twice, x)
    mixer = BidirectionalMamba(d_model=4, d_state=2)
    holes = torch.tensor([[False, True, False]])
    with pytest.raises(ValueError, match="pad only the end"):
        mixer(torch.randn(1, 3, 4), key_padding_mask=holes)
    with pytest.raises(ValueError, match="shape"):
        mixer(torch.randn(1, 3, 5))


def test_unidirectional_is_causal_and_gradients_flow():
    mixer = BidirectionalMamba(d_model=8, d_state=4, bidirectional=False)
    assert mixer.backward_block is None
    x = torch.randn(1, 10, 8)
    torch.testing.assert_close(mixer(x)[:, :6], mixer(x[:, :6]), atol=1e-6, rtol=1e-6)
    bidirectional = BidirectionalMamba(d_model=8, d_state=4)
    mask = lengths_to_padding_mask(torch.tensor([10, 6]), 10)
    bidirectional(torch.randn(2, 10, 8), key_padding_mask=mask).square().sum().backward()
    for name, parameter in bidirectional.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_options_are_checked():
    with pytest.raises(ValueError, match="use_kernels"):
        BidirectionalMamba(d_model=8, use_kernels="yes")
    with pytest.raises(ValueError, match="dt_rank"):
        BidirectionalMamba(d_model=8, dt_rank=0)
    with pytest.raises(ValueError, match="d_state"):
        BidirectionalMamba(d_model=8, d_state=0)
    if not kernels_available():
        with pytest.raises(ImportError, match="mamba_ssm"):
            BidirectionalMamba(d_model=8, use_kernels=True)


def test_block_matches_mambapy():
    mambapy = pytest.importorskip("mambapy.mamba")
    config = mambapy.MambaConfig(d_model=16, n_layers=1, d_state=4, pscan=True)
    theirs = mambapy.MambaBlock(config)
    ours = MambaBlock(d_model=16, d_state=4)
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters())
    with torch.no_grad():
        ours.A_log.add_(0.3 * torch.randn_like(ours.A_log))  # away from the initial values
        ours.D.normal_()
    theirs.load_state_dict(ours.state_dict())
    u = torch.randn(2, 37, 16, requires_grad=True)
    y_ours = ours(u)
    y_theirs = theirs(u)
    torch.testing.assert_close(y_ours, y_theirs, atol=1e-5, rtol=1e-5)
    (g_ours,) = torch.autograd.grad(y_ours.square().sum(), u)
    (g_theirs,) = torch.autograd.grad(y_theirs.square().sum(), u)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-5, rtol=1e-5)


def assert_same_function(first, second, x, mask, *, tolerances):
    """Both mixers give the same outputs and input gradients; ``tolerances`` is
    ((atol, rtol) of the outputs, (atol, rtol) of the gradients)."""
    (out_atol, out_rtol), (grad_atol, grad_rtol) = tolerances
    y_first = first(x, key_padding_mask=mask)
    y_second = second(x, key_padding_mask=mask)
    torch.testing.assert_close(y_first, y_second, atol=out_atol, rtol=out_rtol)
    (g_first,) = torch.autograd.grad(y_first.square().sum(), x)
    (g_second,) = torch.autograd.grad(y_second.square().sum(), x)
    torch.testing.assert_close(g_first, g_second, atol=grad_atol, rtol=grad_rtol)


@pytest.mark.gpu
def test_pure_path_on_cuda_matches_cpu():
    inputs = [t.detach() for t in scan_inputs(2, 300, 16, 8)]
    y_cpu = selective_scan(*inputs)
    y_gpu = selective_scan(*(t.cuda() for t in inputs))
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
def test_mamba_ssm_kernels_match_pure_path():
    if not kernels_available():
        pytest.skip("mamba_ssm kernels are not installed")
    kernel = BidirectionalMamba(d_model=32, d_state=8, use_kernels=True).cuda()
    pure = BidirectionalMamba(d_model=32, d_state=8, use_kernels=False).cuda()
    pure.load_state_dict(kernel.state_dict())
    x = torch.randn(3, 100, 32, device="cuda", requires_grad=True)
    mask = lengths_to_padding_mask(torch.tensor([100, 71, 5], device="cuda"), 100)
    assert kernel.forward_block.uses_kernels(x) and not pure.forward_block.uses_kernels(x)
    assert_same_function(kernel, pure, x, mask, tolerances=((1e-4, 1e-3), (1e-3, 1e-3)))


def fake_mamba_ssm_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """mamba_ssm's ``selective_scan_fn`` contract, on the CPU reference: channels-first
    (batch, d_inner, time) ``u``, ``delta``, ``z``; (batch, d_state, time) ``B``, ``C``;
    ``delta_bias`` added before the softplus; output (y + D u) gated by SiLU(z)."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y = selective_scan_reference(
        *(t.transpose(1, 2) for t in (u, delta)), A, B.transpose(1, 2), C.transpose(1, 2), D
    ).transpose(1, 2)
    return y if z is None else y * F.silu(z)


def fake_causal_conv1d(x, weight, bias=None, activation=None):
    """causal_conv1d's ``causal_conv1d_fn`` contract: x (batch, dim, time), weight (dim, width)."""
    width = weight.shape[1]
    out = F.conv1d(F.pad(x, (width - 1, 0)), weight[:, None, :], bias, groups=x.shape[1])
    return F.silu(out) if activation == "silu" else out


@pytest.mark.parametrize("with_conv_kernel", [True, False])
def test_kernel_wiring_matches_pure_path(monkeypatch, with_conv_kernel):
    # The CUDA branch (argument layouts, delta bias, softplus, gating) checked on the CPU with
    # stand-ins that follow the kernels' documented contracts.
    import speechbrain_ext.nnet.mixers.mamba as mamba_module

    torch.manual_seed(0)
    pure = BidirectionalMamba(d_model=16, d_state=4, use_kernels=False)
    with torch.no_grad():
        for block in (pure.forward_block, pure.backward_block):
            block.A_log.add_(0.3 * torch.randn_like(block.A_log))
            block.D.normal_()
    wired = BidirectionalMamba(d_model=16, d_state=4)
    wired.load_state_dict(pure.state_dict())
    monkeypatch.setattr(mamba_module, "mamba_ssm_selective_scan", fake_mamba_ssm_scan)
    monkeypatch.setattr(
        mamba_module, "causal_conv1d_fn", fake_causal_conv1d if with_conv_kernel else None
    )
    monkeypatch.setattr(MambaBlock, "uses_kernels", lambda self, u: self.use_kernels is not False)
    x = torch.randn(3, 23, 16, requires_grad=True)
    mask = lengths_to_padding_mask(torch.tensor([23, 17, 4]), 23)
    assert_same_function(wired, pure, x, mask, tolerances=((1e-5, 1e-5), (1e-5, 1e-5)))


def load_benchmark():
    spec = importlib.util.spec_from_file_location("mamba_scan", ROOT / "benchmarks/mamba_scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_quick_run(tmp_path):
    benchmark = load_benchmark()
    rows = benchmark.main(["--quick", "--no-memory", "--out", str(tmp_path)])
    assert len(rows) == 2 * len(benchmark.MODES) * len(benchmark.METHODS)
    assert all(row["max_abs_diff_to_chunked"] < 1e-4 for row in rows)
    assert (tmp_path / "mamba_scan_cpu.csv").read_text().count("\n") == len(rows) + 1
    table = (tmp_path / "mamba_scan_cpu.md").read_text()
    assert "| 45 | forward_backward |" in table
    # The memory probe runs one cell in a fresh subprocess.
    args = benchmark.argparse.Namespace(d_model=8, d_state=4, batch=1, chunk_size=8, threads=1)
    assert benchmark.measure_memory(args, "chunked", 16, "forward_backward") >= 0.0


def test_benchmark_layers_quick_run(tmp_path):
    benchmark = load_benchmark()
    rows = benchmark.main(["--layers", "--quick", "--out", str(tmp_path)])
    layers = {row["layer"] for row in rows}
    assert {"mamba", "mamba_chunked", "mhsa"} <= layers
    assert all(row["median_s"] > 0 for row in rows)
    assert all(row["ratio_to_mhsa"] == 1.0 for row in rows if row["layer"] == "mhsa")
    table = (tmp_path / "mamba_layer_cpu.md").read_text()
    assert "| 45 | " in table and "mamba_chunked ms (x mhsa)" in table


def test_chunked_scan_stays_fp32_under_autocast():
    inputs = scan_inputs(1, 30, 6, 4)
    weight = torch.randn(1, 30, 6)
    y_ref, g_ref = outputs_and_grads(selective_scan_reference, inputs, weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, g = outputs_and_grads(selective_scan, inputs, weight)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g[1], g_ref[1], atol=1e-5, rtol=1e-5)


# --- The fused C++ scan (speechbrain_ext/nnet/csrc/selective_scan_cpu.cpp) -------------------


@pytest.fixture(scope="module")
def fused_kernel():
    """The compiled kernel (built at most once per session: the module caches it)."""
    kernel = cpu_kernels.selective_scan_cpu_kernel()
    if kernel is None:
        if shutil.which("c++") or shutil.which("g++"):
            pytest.fail(
                f"a C++ compiler exists but the kernel did not build: {cpu_kernels.build_error()}"
            )
        pytest.skip("no C++ compiler: the fused CPU scan is unavailable")
    return kernel


def fused(**options):
    return lambda *inputs: selective_scan_fused_cpu(*inputs, **options)


def assert_agree(function, oracle, inputs, *, atol=1e-5, rtol=1e-5):
    """Outputs and the gradients of every input agree."""
    y_want = oracle(*inputs)
    weight = torch.randn_like(y_want)
    y_want, g_want = outputs_and_grads(oracle, inputs, weight)
    y, g = outputs_and_grads(function, inputs, weight)
    torch.testing.assert_close(y, y_want, atol=atol, rtol=rtol)
    names = "x delta A B C D z delta_bias".split()
    for name, got, want in zip(names, g, g_want):
        torch.testing.assert_close(
            got, want, atol=atol, rtol=rtol, msg=lambda text, name=name: f"{name}: {text}"
        )


@pytest.mark.parametrize(
    "batch, time, d_inner, d_state, chunk_size, reverse, gate",
    [
        (2, 37, 19, 4, 16, False, False),  # a 16-channel block plus 3 lone channels
        (2, 37, 19, 4, 16, True, True),
        (1, 50, 16, 16, 7, False, True),  # d_state 16, as the mixer
        (3, 13, 3, 5, 1, True, False),  # channels below one block; one frame per chunk
        (1, 5, 40, 3, 64, False, False),  # one chunk longer than the sequence
        (2, 1, 8, 2, 32, True, True),  # one frame
    ],
)
def test_fused_scan_matches_reference(
    fused_kernel, batch, time, d_inner, d_state, chunk_size, reverse, gate
):
    inputs = scan_inputs(batch, time, d_inner, d_state)
    if gate:
        inputs.append(torch.randn(batch, time, d_inner, requires_grad=True))

    def split(options):
        def call(*tensors):
            z = tensors[6] if gate else None
            return options(*tensors[:6], z=z, reverse=reverse)

        return call

    oracle = split(lambda *t, **kw: selective_scan_reference(*t, **kw))
    kernel = split(lambda *t, **kw: selective_scan_fused_cpu(*t, chunk_size=chunk_size, **kw))
    assert_agree(kernel, oracle, inputs)


@pytest.mark.parametrize("reverse", [False, True])
def test_fused_scan_delta_bias_and_softplus(fused_kernel, reverse):
    # Δ = softplus(raw + bias) inside the kernel, raw spanning the softplus' whole range.
    x, _, A, B, C, D = scan_inputs(2, 29, 21, 16)
    raw = (4 * torch.randn(2, 29, 21) - 3).requires_grad_()
    bias = torch.randn(21, requires_grad=True)
    z = torch.randn(2, 29, 21, requires_grad=True)
    inputs = [x, raw, A, B, C, D, z, bias]

    def call(scan):
        def run(x, raw, A, B, C, D, z, bias):
            options = {"z": z, "reverse": reverse, "delta_bias": bias, "delta_softplus": True}
            return scan(x, raw, A, B, C, D, **options)

        return run

    assert_agree(call(selective_scan_fused_cpu), call(selective_scan_reference), inputs)
    assert_agree(call(selective_scan_chunked), call(selective_scan_reference), inputs)


def test_fused_scan_long_sequences(fused_kernel):
    # T = 2000 forward at a small width (and Σ Δ|A| in the thousands), against the reference.
    inputs = [t.detach() for t in scan_inputs(1, 2000, 20, 16, delta_shift=0.5)]
    z = torch.randn(1, 2000, 20)
    for reverse in (False, True):
        want = selective_scan_reference(*inputs, z=z, reverse=reverse)
        got = selective_scan_fused_cpu(*inputs, z=z, reverse=reverse)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # and forward + backward over 2000 frames at width 4 (against the chunked scan, itself held
    # to the reference at this length above).
    inputs = scan_inputs(2, 2000, 4, 4, delta_shift=0.5)
    assert_agree(fused(), lambda *t: selective_scan_chunked(*t), inputs)


def test_fused_scan_threads_inputs_views_and_dtypes(fused_kernel):
    inputs = scan_inputs(3, 41, 37, 8)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # gradients of B, C summed from per-thread slices
    try:
        assert_agree(
            fused(reverse=True), lambda *t: selective_scan_chunked(*t, reverse=True), inputs
        )
    finally:
        torch.set_num_threads(threads)
    # Views with a time stride (B, C split from one projection, as in the mixer) are read in
    # place and give the same result.
    x, delta, A, B, C, D = (t.detach() for t in inputs)
    projection = torch.cat([torch.randn(3, 41, 2), B, C], dim=-1)
    B_view, C_view = projection[..., 2:10], projection[..., 10:]
    assert B_view.stride(1) == 18
    torch.testing.assert_close(
        selective_scan_fused_cpu(x, delta, A, B_view, C_view, D),
        selective_scan_fused_cpu(x, delta, A, B, C, D),
        atol=0,
        rtol=0,
    )
    low = selective_scan_fused_cpu(*(t.bfloat16() for t in (x, delta, A, B, C, D)))
    assert low.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="z must"):
        selective_scan_fused_cpu(x, delta, A, B, C, D, z=x[:, :3])


def test_mixer_uses_fused_scan_and_matches_the_fallback(fused_kernel, monkeypatch):
    torch.manual_seed(0)
    mixer = BidirectionalMamba(d_model=16, d_state=4)
    with torch.no_grad():
        for block in (mixer.forward_block, mixer.backward_block):
            block.A_log.add_(0.3 * torch.randn_like(block.A_log))
            block.D.normal_()
    calls = []
    original = scan_module.selective_scan_fused_cpu
    monkeypatch.setattr(
        scan_module,
        "selective_scan_fused_cpu",
        lambda *a, **k: calls.append(1) or original(*a, **k),
    )
    x = torch.randn(3, 23, 16, requires_grad=True)
    mask = lengths_to_padding_mask(torch.tensor([23, 17, 4]), 23)
    y = mixer(x, key_padding_mask=mask)
    assert len(calls) == 2  # both directions on the kernel
    (g,) = torch.autograd.grad(y.square().sum(), x)
    cpu_kernels.set_cpu_kernels_enabled(False)  # the same mixer on the pure-PyTorch scan
    try:
        y_pure = mixer(x, key_padding_mask=mask)
        (g_pure,) = torch.autograd.grad(y_pure.square().sum(), x)
    finally:
        cpu_kernels.set_cpu_kernels_enabled(None)
    assert len(calls) == 2
    torch.testing.assert_close(y, y_pure, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g, g_pure, atol=1e-5, rtol=1e-5)
    # Padding exactness on the kernel path: each utterance alone gives its valid frames.
    for row, length in enumerate([23, 17, 4]):
        alone = mixer(x[row : row + 1, :length])
        torch.testing.assert_close(y[row : row + 1, :length], alone, atol=1e-5, rtol=1e-5)


def test_failed_build_falls_back_with_one_warning(monkeypatch):
    def broken_build():
        raise RuntimeError("Error building extension 'sbext_selective_scan_cpu': no compiler")

    builds = []
    kernel = cpu_kernels.SELECTIVE_SCAN
    monkeypatch.setattr(kernel, "build", lambda: builds.append(1) or broken_build())
    # Start from "not tried yet"; monkeypatch puts the session's real build result back after.
    for key, value in (("tried", False), ("module", None), ("error", None)):
        monkeypatch.setattr(kernel, key, value)
    monkeypatch.setitem(cpu_kernels._enabled, "value", None)
    monkeypatch.delenv(cpu_kernels.DISABLE_ENV, raising=False)
    inputs = [t.detach() for t in scan_inputs(2, 30, 6, 4)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = scan_module.selective_scan(*inputs, reverse=True)
        second = scan_module.selective_scan(*inputs, reverse=True)
        mixer_out = BidirectionalMamba(d_model=8, d_state=4)(torch.randn(1, 5, 8))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert (
        len(messages) == 1 and "pure-PyTorch scan" in messages[0] and "no compiler" in messages[0]
    )
    assert builds == [1]  # tried once, not on every call
    assert isinstance(cpu_kernels.build_error(), RuntimeError)
    want = selective_scan_reference(*inputs, reverse=True)
    torch.testing.assert_close(first, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(first, second) and mixer_out.shape == (1, 5, 8)
    with pytest.raises(RuntimeError, match="unavailable"):
        selective_scan_fused_cpu(*inputs)


def test_environment_variable_forces_the_fallback(monkeypatch):
    monkeypatch.setitem(cpu_kernels._enabled, "value", None)
    monkeypatch.setenv(cpu_kernels.DISABLE_ENV, "1")
    monkeypatch.setattr(cpu_kernels.SELECTIVE_SCAN, "build", lambda: pytest.fail("built"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # forcing the fallback is silent
        assert cpu_kernels.selective_scan_cpu_kernel() is None
        assert not scan_module.fused_cpu_scan_available()
    monkeypatch.setenv(cpu_kernels.DISABLE_ENV, "0")
    assert cpu_kernels.cpu_kernels_enabled()


def test_kernel_source_ships_with_the_package():
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else None
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["speechbrain_ext.nnet"]
    assert cpu_kernels.SOURCE.exists()
    relative = cpu_kernels.SOURCE.relative_to(ROOT / "speechbrain_ext" / "nnet")
    assert any(relative.match(pattern) for pattern in patterns)
