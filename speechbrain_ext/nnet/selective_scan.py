"""Mamba's selective scan: a sequential reference, a chunked pure-PyTorch path and a fused C++
kernel for the CPU.

The scan (Gu & Dao, 2023), per channel ``d`` and state ``n``::

    h_t = exp(Δ_t A) h_(t-1) + Δ_t B_t x_t        h_0 = 0
    y_t = C_t · h_t + D x_t

with ``x``, ``Δ`` (batch, time, d_inner), ``A`` (d_inner, d_state), ``B``, ``C``
(batch, time, d_state) and ``D`` (d_inner,).

:func:`selective_scan_reference` loops over time with autograd: slow, obviously right.

:func:`selective_scan` is what the mixer calls: for CPU tensors :func:`selective_scan_fused_cpu`
(the C++ kernel of ``csrc/selective_scan_cpu.cpp``, built on first use by
:mod:`speechbrain_ext.nnet.cpu_kernels`; OpenMP over batch × 16-channel blocks, each block's
states in registers, only y written, the backward pass recomputing each chunk's states from a
saved one; it also applies Δ's bias and softplus, the D skip and the SiLU(z) gate), and
:func:`selective_scan_chunked` elsewhere or when the kernel does not build (one warning) or is
disabled (``SPEECHBRAIN_EXT_NO_CPU_KERNELS=1``).

:func:`selective_scan_chunked` is a ``torch.autograd.Function`` that walks the sequence in
chunks of ``chunk_size`` frames. Per chunk, the decays ``exp(Δ A)``, the inputs ``Δ B x`` and the
outputs ``C · h`` are computed for the whole chunk at once (vectorised, in preallocated buffers
that stay in cache), and only the recurrence itself, one fused ``addcmul`` per frame, is
sequential; the state is carried from chunk to chunk. The backward pass recomputes each chunk's
states from the state saved at its start and runs the adjoint recurrence in reverse, so memory is
O(batch · chunk · d_inner · d_state) plus one state per chunk, never a (batch, time, d_inner,
d_state) tensor. The recurrence multiplies by decays in (0, 1] and never divides by a cumulative
product, so it is as stable as the reference at any length (log-space cumsum tricks overflow once
the summed Δ·|A| exceeds ~88 in fp32).

Why not a parallel (log-depth) scan on CPU: Blelloch or Hillis-Steele scans and segment-sum
formulations make several more passes over (time, d_inner, d_state) tensors, and on a CPU the scan
is bound by memory traffic and by ``exp`` (one per element, unavoidable), not by the number of
sequential steps; in single-thread trials at Study B's width they were slower than this chunked
recurrence (``benchmarks/mamba_scan.py`` compares it with ``mambapy``'s parallel scan).
Computation is in fp32 whatever the input dtype.

The fused CUDA kernel of ``mamba_ssm`` is exposed as :data:`mamba_ssm_selective_scan` (``None``
when the package is absent); the mixer uses it for CUDA inputs.

Example
-------
>>> import torch
>>> x, delta = torch.randn(2, 37, 8), torch.rand(2, 37, 8)
>>> A = -torch.arange(1.0, 5.0).repeat(8, 1)
>>> B, C, D = torch.randn(2, 37, 4), torch.randn(2, 37, 4), torch.ones(8)
>>> fast = selective_scan_chunked(x, delta, A, B, C, D, chunk_size=16)
>>> slow = selective_scan_reference(x, delta, A, B, C, D)
>>> fast.shape, torch.allclose(fast, slow, atol=1e-5)
(torch.Size([2, 37, 8]), True)
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_ext.nnet import cpu_kernels

try:  # fused CUDA kernels, optional
    from mamba_ssm.ops.selective_scan_interface import (
        selective_scan_fn as mamba_ssm_selective_scan,
    )
except Exception:  # ImportError, or a broken CUDA build raising anything else on import
    mamba_ssm_selective_scan = None

DEFAULT_CHUNK_SIZE = 32
"""Frames per chunk of :func:`selective_scan`: 32-64 were fastest among 8-128 on CPU (d_inner 948);
the smaller keeps the buffers in cache."""

_LOG2_E = 1.0 / math.log(2.0)


def _step_sizes(delta, delta_bias, delta_softplus):
    """Δ from the raw ``delta``: plus ``delta_bias``, through a softplus if asked (in fp32)."""
    if delta_bias is None and not delta_softplus:
        return delta
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()
    return F.softplus(delta) if delta_softplus else delta


def _check_shapes(x, delta, A, B, C, D, z=None, delta_bias=None) -> None:
    """Raise ``ValueError`` naming the first argument whose shape does not fit."""
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, time, d_inner), got shape {tuple(x.shape)}")
    batch, time, d_inner = x.shape
    if delta.shape != x.shape:
        raise ValueError(f"delta must have x's shape {tuple(x.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d_inner:
        raise ValueError(f"A must be (d_inner={d_inner}, d_state), got {tuple(A.shape)}")
    d_state = A.shape[1]
    for name, tensor in (("B", B), ("C", C)):
        if tensor.shape != (batch, time, d_state):
            raise ValueError(
                f"{name} must be (batch, time, d_state) = {(batch, time, d_state)}, "
                f"got {tuple(tensor.shape)}"
            )
    if D is not None and D.shape != (d_inner,):
        raise ValueError(f"D must be (d_inner,) = ({d_inner},), got {tuple(D.shape)}")
    if z is not None and z.shape != x.shape:
        raise ValueError(f"z must have x's shape {tuple(x.shape)}, got {tuple(z.shape)}")
    if delta_bias is not None and delta_bias.shape != (d_inner,):
        raise ValueError(f"delta_bias must be (d_inner,) = ({d_inner},), got {delta_bias.shape}")


def selective_scan_reference(
    x, delta, A, B, C, D=None, *, z=None, reverse=False, delta_bias=None, delta_softplus=False
):
    """The selective scan as a plain loop over time (autograd through every step).

    Arguments
    ---------
    x : torch.Tensor
        Inputs (batch, time, d_inner).
    delta : torch.Tensor
        Positive step sizes Δ (batch, time, d_inner), softplus already applied.
    A : torch.Tensor
        State matrix diagonal (d_inner, d_state), negative.
    B, C : torch.Tensor
        Input and output projections (batch, time, d_state).
    D : torch.Tensor or None
        Skip connection (d_inner,).
    z : torch.Tensor or None
        Gate (batch, time, d_inner): the output is multiplied by SiLU(z).
    delta_bias : torch.Tensor or None
        (d_inner,) added to ``delta`` first.
    delta_softplus : bool
        Use ``softplus(delta + delta_bias)`` as Δ (the mixer passes ``dt_proj``'s raw output).
    reverse : bool
        Run the recurrence from the last frame to the first (``flip(scan(flip(inputs)))``).

    Returns
    -------
    torch.Tensor
        y (batch, time, d_inner), in x's dtype (computed in fp32).

    Example
    -------
    >>> import torch
    >>> x = torch.ones(1, 3, 1)
    >>> y = selective_scan_reference(x, torch.ones(1, 3, 1), torch.zeros(1, 1),
    ...                              torch.ones(1, 3, 1), torch.ones(1, 3, 1))
    >>> y.flatten().tolist()  # A = 0: h_t = t
    [1.0, 2.0, 3.0]
    """
    _check_shapes(x, delta, A, B, C, D, z, delta_bias)
    dtype = x.dtype
    delta = _step_sizes(delta, delta_bias, delta_softplus)
    if reverse:
        flipped = selective_scan_reference(
            x.flip(1), delta.flip(1), A, B.flip(1), C.flip(1), D, z=None if z is None else z.flip(1)
        )
        return flipped.flip(1)
    x, delta, A, B, C = (t.float() for t in (x, delta, A, B, C))
    batch, time, d_inner = x.shape
    h = x.new_zeros(batch, d_inner, A.shape[1])  # (batch, d_inner, d_state)
    ys = []
    for t in range(time):
        decay = torch.exp(delta[:, t, :, None] * A)  # (batch, d_inner, d_state)
        h = decay * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, d_inner)
    if D is not None:
        y = y + x * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


class _ChunkedScan(torch.autograd.Function):
    """Chunked selective scan with a recomputing backward pass (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, chunk_size):
        # x, delta (batch, time, d_inner); A (d_inner, d_state); B, C (batch, time, d_state)
        batch, time, d_inner = x.shape
        d_state = A.shape[1]
        A2 = A * _LOG2_E  # exp(v) = exp2(v · log2 e); exp2 is ~2x faster than exp on CPU
        length = min(chunk_size, time)
        decay = x.new_empty(length, batch, d_inner, d_state)
        states = x.new_empty(length, batch, d_inner, d_state)
        starts = x.new_empty(-(-time // chunk_size), batch, d_inner, d_state)
        y = x.new_empty(time, batch, d_inner)
        h = x.new_zeros(batch, d_inner, d_state)
        for k, begin in enumerate(range(0, time, chunk_size)):
            end = min(begin + chunk_size, time)
            n = end - begin
            starts[k] = h
            a, hs = decay[:n], states[:n]
            _chunk_states(x, delta, A2, B, begin, end, starts[k], a, hs)
            h = hs[n - 1]  # a view, copied into starts[k + 1] before the buffer is reused
            y[begin:end] = torch.einsum("lbdn,lbn->lbd", hs, C[:, begin:end].transpose(0, 1))
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(x, delta, A, B, C, starts)
        return y.transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, grad_y):
        with torch.autocast(grad_y.device.type, enabled=False):  # stay in fp32
            return _ChunkedScan._backward(ctx, grad_y)

    @staticmethod
    def _backward(ctx, grad_y):
        x, delta, A, B, C, starts = ctx.saved_tensors
        chunk_size = ctx.chunk_size
        batch, time, d_inner = x.shape
        d_state = A.shape[1]
        A2 = A * _LOG2_E
        grad_y = grad_y.float()
        length = min(chunk_size, time)
        decay = x.new_empty(length, batch, d_inner, d_state)
        states = x.new_empty(length, batch, d_inner, d_state)
        adjoint = x.new_empty(length, batch, d_inner, d_state)
        grad_x = torch.empty_like(x)
        grad_delta = torch.empty_like(x)
        grad_B = torch.empty_like(B)
        grad_C = torch.empty_like(C)
        grad_A = torch.zeros_like(A)
        carry = x.new_zeros(batch, d_inner, d_state)  # exp(Δ_(t+1) A) g_(t+1) from the next chunk
        n_chunks = starts.shape[0]
        for k in reversed(range(n_chunks)):
            begin = k * chunk_size
            end = min(begin + chunk_size, time)
            n = end - begin
            a, hs, g = decay[:n], states[:n], adjoint[:n]
            _chunk_states(x, delta, A2, B, begin, end, starts[k], a, hs)
            gy = grad_y[:, begin:end].transpose(0, 1)  # (n, batch, d_inner)
            Bc = B[:, begin:end].transpose(0, 1)  # (n, batch, d_state)
            Cc = C[:, begin:end].transpose(0, 1)
            xc = x[:, begin:end].transpose(0, 1)
            dc = delta[:, begin:end].transpose(0, 1)
            # Adjoint state g_t = ∂L/∂h_t = gy_t ⊗ C_t + exp(Δ_(t+1) A) g_(t+1), in reverse.
            torch.mul(gy[..., None], Cc[:, :, None, :], out=g)
            g[n - 1] += carry
            for i in range(n - 2, -1, -1):
                g[i].addcmul_(a[i + 1], g[i + 1])
            carry = a[0] * g[0]
            grad_C[:, begin:end] = torch.einsum("lbd,lbdn->lbn", gy, hs).transpose(0, 1)
            g_B = torch.einsum("lbdn,lbn->lbd", g, Bc)  # Σ_n g B, (n, batch, d_inner)
            grad_B[:, begin:end] = torch.einsum("lbdn,lbd->lbn", g, dc * xc).transpose(0, 1)
            # q_t = g_t ⊙ exp(Δ_t A) ⊙ h_(t-1) = ∂L/∂(Δ_t A), computed in place of the decays.
            q = a.mul_(g)
            q[0].mul_(starts[k])
            q[1:].mul_(hs[: n - 1])
            # (einsum would route these two through slow batched matmuls; mul + sum is ~3x faster)
            grad_A += (q * dc[..., None]).sum((0, 1))
            grad_delta[:, begin:end] = ((q * A).sum(-1) + xc * g_B).transpose(0, 1)
            grad_x[:, begin:end] = (dc * g_B).transpose(0, 1)
        return grad_x, grad_delta, grad_A, grad_B, grad_C, None


def _chunk_states(x, delta, A2, B, begin, end, h0, decay, states) -> None:
    """Fill ``decay`` with exp(Δ A) and ``states`` with h_t for frames ``begin:end``.

    ``decay`` and ``states`` are (end - begin, batch, d_inner, d_state) buffers; ``h0``
    (batch, d_inner, d_state) is the state before ``begin``; ``A2`` is A · log2(e).
    """
    dc = delta[:, begin:end].transpose(0, 1)  # (n, batch, d_inner)
    torch.mul(dc[..., None], A2, out=decay).exp2_()
    dx = dc * x[:, begin:end].transpose(0, 1)
    torch.mul(dx[..., None], B[:, begin:end].transpose(0, 1)[:, :, None, :], out=states)
    states[0].addcmul_(decay[0], h0)
    for i in range(1, end - begin):
        states[i].addcmul_(decay[i], states[i - 1])


def selective_scan_chunked(
    x,
    delta,
    A,
    B,
    C,
    D=None,
    *,
    z=None,
    reverse=False,
    delta_bias=None,
    delta_softplus=False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    """The selective scan in pure PyTorch, chunked (memory bounded, exact; see the module
    docstring). Any device; the fallback of :func:`selective_scan` on the CPU.

    Arguments
    ---------
    x : torch.Tensor
        Inputs (batch, time, d_inner).
    delta : torch.Tensor
        Positive step sizes Δ (batch, time, d_inner), softplus already applied.
    A : torch.Tensor
        State matrix diagonal (d_inner, d_state), negative.
    B, C : torch.Tensor
        Input and output projections (batch, time, d_state).
    D : torch.Tensor or None
        Skip connection (d_inner,).
    z : torch.Tensor or None
        Gate (batch, time, d_inner): the output is multiplied by SiLU(z).
    delta_bias : torch.Tensor or None
        (d_inner,) added to ``delta`` first.
    delta_softplus : bool
        Use ``softplus(delta + delta_bias)`` as Δ (the mixer passes ``dt_proj``'s raw output).
    reverse : bool
        Run the recurrence from the last frame to the first.
    chunk_size : int
        Frames per chunk; memory is O(batch · chunk_size · d_inner · d_state).

    Returns
    -------
    torch.Tensor
        y (batch, time, d_inner), in x's dtype (computed in fp32).

    Example
    -------
    >>> import torch
    >>> x = torch.ones(1, 3, 1)
    >>> y = selective_scan_chunked(x, torch.ones(1, 3, 1), torch.zeros(1, 1),
    ...                            torch.ones(1, 3, 1), torch.ones(1, 3, 1), chunk_size=2)
    >>> y.flatten().tolist()
    [1.0, 2.0, 3.0]
    """
    _check_shapes(x, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = x.dtype
    if x.shape[1] == 0:
        return x.new_zeros(x.shape)
    delta = _step_sizes(delta, delta_bias, delta_softplus)
    if reverse:
        x, delta, B, C = (t.flip(1) for t in (x, delta, B, C))
    with torch.autocast(x.device.type, enabled=False):  # the einsums must not drop to bf16
        inputs = (t.float().contiguous() for t in (x, delta, A, B, C))
        y = _ChunkedScan.apply(*inputs, int(chunk_size))
    if D is not None:
        y = y + x.float() * D.float()
    if reverse:
        y = y.flip(1)
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def _kernel_layout(tensor: torch.Tensor) -> torch.Tensor:
    """fp32 with a contiguous last dimension (the kernel takes batch and time strides)."""
    tensor = tensor.float()
    return tensor if tensor.stride(-1) == 1 else tensor.contiguous()


def _view_args(tensor: torch.Tensor | None) -> tuple[int, int, int]:
    """(pointer, batch stride, time stride) of a (batch, time, features) tensor; zeros for None."""
    if tensor is None:
        return (0, 0, 0)
    return (tensor.data_ptr(), tensor.stride(0), tensor.stride(1))


class _FusedCPUScan(torch.autograd.Function):
    """The C++ scan of :mod:`speechbrain_ext.nnet.cpu_kernels`, forward and backward."""

    @staticmethod
    def forward(
        ctx, kernel, x, delta, A, B, C, D, z, delta_bias, softplus, reverse, chunk_size, save
    ):
        # x, delta, z (batch, time, d_inner); A (d_inner, d_state); B, C (batch, time, d_state)
        batch, time, d_inner = x.shape
        d_state = A.shape[1]
        y = x.new_empty(batch, time, d_inner)
        n_chunks = -(-time // chunk_size)
        starts = x.new_empty(batch, n_chunks, d_state, d_inner) if save else None
        kernel.forward(
            *_view_args(x),
            *_view_args(delta),
            *_view_args(z),
            *_view_args(B),
            *_view_args(C),
            A.data_ptr(),
            0 if D is None else D.data_ptr(),
            0 if delta_bias is None else delta_bias.data_ptr(),
            softplus,
            y.data_ptr(),
            0 if starts is None else starts.data_ptr(),
            batch,
            time,
            d_inner,
            d_state,
            chunk_size,
            reverse,
            torch.get_num_threads(),
        )
        ctx.kernel, ctx.reverse, ctx.chunk_size = kernel, reverse, chunk_size
        ctx.has_D, ctx.has_z = D is not None, z is not None
        ctx.has_bias, ctx.softplus = delta_bias is not None, softplus
        if save:
            ctx.save_for_backward(x, delta, A, B, C, D, z, delta_bias, starts)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        batch, time, d_inner = x.shape
        d_state = A.shape[1]
        grad_y = _kernel_layout(grad_y)
        threads = torch.get_num_threads()
        grad_x, grad_delta = torch.empty_like(x), torch.empty_like(x)
        grad_z = torch.empty_like(x) if ctx.has_z else None
        grad_A = torch.empty_like(A)
        grad_D = torch.empty(d_inner, dtype=x.dtype) if ctx.has_D else None
        grad_B = x.new_zeros(threads, batch, time, d_state)  # one slice per thread, summed below
        grad_C = x.new_zeros(threads, batch, time, d_state)
        ctx.kernel.backward(
            *_view_args(x),
            *_view_args(delta),
            *_view_args(z),
            *_view_args(B),
            *_view_args(C),
            A.data_ptr(),
            0 if D is None else D.data_ptr(),
            0 if delta_bias is None else delta_bias.data_ptr(),
            ctx.softplus,
            starts.data_ptr(),
            *_view_args(grad_y),
            *_view_args(grad_x),
            *_view_args(grad_delta),
            0 if grad_z is None else grad_z.data_ptr(),
            grad_A.data_ptr(),
            0 if grad_D is None else grad_D.data_ptr(),
            grad_B.data_ptr(),
            grad_C.data_ptr(),
            batch,
            time,
            d_inner,
            d_state,
            ctx.chunk_size,
            ctx.reverse,
            threads,
        )
        grad_B, grad_C = grad_B.sum(0), grad_C.sum(0)
        grad_bias = grad_delta.sum((0, 1)) if ctx.has_bias else None  # Δ's bias: summed
        return (
            None,
            grad_x,
            grad_delta,
            grad_A,
            grad_B,
            grad_C,
            grad_D,
            grad_z,
            grad_bias,
            None,
            None,
            None,
            None,
        )


def fused_cpu_scan_available(d_state: int = 16) -> bool:
    """Whether :func:`selective_scan` runs CPU inputs with ``d_state`` on the C++ kernel."""
    kernel = cpu_kernels.selective_scan_cpu_kernel()
    return kernel is not None and 1 <= d_state <= kernel.max_state


def selective_scan_fused_cpu(
    x,
    delta,
    A,
    B,
    C,
    D=None,
    *,
    z=None,
    reverse=False,
    delta_bias=None,
    delta_softplus=False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    """The selective scan on the fused C++ kernel (CPU tensors; raises if it is unavailable).

    Same arguments and result as :func:`selective_scan_chunked`. Never materialises a
    (batch, time, d_inner, d_state) tensor: each channel's states stay in a local array, the
    forward pass writes only y (and, when a gradient is needed, the state at every
    ``chunk_size``-th frame), and the backward pass recomputes each chunk's states from them.
    Computation is in fp32 whatever the input dtype. ``d_state`` is at most 64.

    Example
    -------
    >>> import torch
    >>> x = torch.ones(1, 3, 1)
    >>> y = selective_scan_fused_cpu(x, torch.ones(1, 3, 1), torch.zeros(1, 1),
    ...                              torch.ones(1, 3, 1), torch.ones(1, 3, 1))  # doctest: +SKIP
    >>> y.flatten().tolist()  # doctest: +SKIP
    [1.0, 2.0, 3.0]
    """
    _check_shapes(x, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    tensors = [t for t in (x, delta, A, B, C, D, z, delta_bias) if t is not None]
    if any(t.device.type != "cpu" for t in tensors):
        raise ValueError("selective_scan_fused_cpu: every tensor must be on the CPU")
    kernel = cpu_kernels.selective_scan_cpu_kernel()
    if kernel is None:
        raise RuntimeError(
            "selective_scan_fused_cpu: the C++ kernel is unavailable "
            f"({cpu_kernels.build_error() or 'disabled'})"
        )
    if A.shape[1] > kernel.max_state:
        raise ValueError(f"selective_scan_fused_cpu: d_state must be <= {kernel.max_state}")
    dtype = x.dtype
    if x.shape[1] == 0:
        return x.new_zeros(x.shape)
    save = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    with torch.autocast("cpu", enabled=False):
        x, delta, B, C = (_kernel_layout(t) for t in (x, delta, B, C))
        A = A.float().contiguous()
        D = None if D is None else D.float().contiguous()
        z = None if z is None else _kernel_layout(z)
        bias = None if delta_bias is None else delta_bias.float().contiguous()
        y = _FusedCPUScan.apply(
            kernel,
            x,
            delta,
            A,
            B,
            C,
            D,
            z,
            bias,
            bool(delta_softplus),
            bool(reverse),
            chunk_size,
            save,
        )
    return y.to(dtype)


def selective_scan(
    x,
    delta,
    A,
    B,
    C,
    D=None,
    *,
    z=None,
    reverse=False,
    delta_bias=None,
    delta_softplus=False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    """The selective scan: the fused C++ kernel for CPU tensors when it builds, else the chunked
    pure-PyTorch scan (other devices, or the kernel unavailable or disabled).

    Arguments
    ---------
    x : torch.Tensor
        Inputs (batch, time, d_inner).
    delta : torch.Tensor
        Positive step sizes Δ (batch, time, d_inner), softplus already applied.
    A : torch.Tensor
        State matrix diagonal (d_inner, d_state), negative.
    B, C : torch.Tensor
        Input and output projections (batch, time, d_state).
    D : torch.Tensor or None
        Skip connection (d_inner,).
    z : torch.Tensor or None
        Gate (batch, time, d_inner): the output is multiplied by SiLU(z).
    delta_bias : torch.Tensor or None
        (d_inner,) added to ``delta`` first.
    delta_softplus : bool
        Use ``softplus(delta + delta_bias)`` as Δ (the mixer passes ``dt_proj``'s raw output).
    reverse : bool
        Run the recurrence from the last frame to the first.
    chunk_size : int
        Frames between saved states (kernel) or per chunk (PyTorch).

    Returns
    -------
    torch.Tensor
        y (batch, time, d_inner), in x's dtype (computed in fp32).

    Example
    -------
    >>> import torch
    >>> x = torch.ones(1, 3, 1)
    >>> y = selective_scan(x, torch.ones(1, 3, 1), torch.zeros(1, 1),
    ...                    torch.ones(1, 3, 1), torch.ones(1, 3, 1), chunk_size=2)
    >>> y.flatten().tolist()
    [1.0, 2.0, 3.0]
    """
    if x.device.type == "cpu" and fused_cpu_scan_available(A.shape[-1]):
        scan = selective_scan_fused_cpu
    else:
        scan = selective_scan_chunked
    return scan(
        x,
        delta,
        A,
        B,
        C,
        D,
        z=z,
        reverse=reverse,
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
        chunk_size=chunk_size,
    )
