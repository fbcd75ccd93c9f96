"""Mamba's selective scan in pure PyTorch: a sequential reference and a fast chunked path.

The scan (Gu & Dao, 2023), per channel ``d`` and state ``n``::

    h_t = exp(Δ_t A) h_(t-1) + Δ_t B_t x_t        h_0 = 0
    y_t = C_t · h_t + D x_t

with ``x``, ``Δ`` (batch, time, d_inner), ``A`` (d_inner, d_state), ``B``, ``C``
(batch, time, d_state) and ``D`` (d_inner,).

:func:`selective_scan_reference` loops over time with autograd: slow, obviously right.

:func:`selective_scan` is the fast path, a ``torch.autograd.Function`` that walks the sequence in
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
>>> fast = selective_scan(x, delta, A, B, C, D, chunk_size=16)
>>> slow = selective_scan_reference(x, delta, A, B, C, D)
>>> fast.shape, torch.allclose(fast, slow, atol=1e-5)
(torch.Size([2, 37, 8]), True)
"""

import math

import torch

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


def _check_shapes(x, delta, A, B, C, D) -> None:
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


def selective_scan_reference(x, delta, A, B, C, D=None):
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
    _check_shapes(x, delta, A, B, C, D)
    dtype = x.dtype
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


def selective_scan(x, delta, A, B, C, D=None, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
    """The selective scan, chunked (fast on CPU, memory bounded, exact; see the module docstring).

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
    >>> y = selective_scan(x, torch.ones(1, 3, 1), torch.zeros(1, 1),
    ...                    torch.ones(1, 3, 1), torch.ones(1, 3, 1), chunk_size=2)
    >>> y.flatten().tolist()
    [1.0, 2.0, 3.0]
    """
    _check_shapes(x, delta, A, B, C, D)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = x.dtype
    if x.shape[1] == 0:
        return x.new_zeros(x.shape)
    with torch.autocast(x.device.type, enabled=False):  # the einsums must not drop to bf16
        inputs = (t.float().contiguous() for t in (x, delta, A, B, C))
        y = _ChunkedScan.apply(*inputs, int(chunk_size))
    if D is not None:
        y = y + x.float() * D.float()
    return y.to(dtype)
