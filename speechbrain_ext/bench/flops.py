"""Counting multiply-accumulates (MAC), FLOP and bit operations (BOP) of any module.

:class:`CostCounter` runs a forward pass under a ``TorchDispatchMode`` that prices every aten op
found in ``torch.utils.flop_counter``'s formula registry (matmul, linear, convolution, fused
attention...), and attributes each op to the innermost module that ran it. Two things the
built-in ``FlopCounterMode`` gets wrong are fixed here:

- On CPU the fused attention kernel is ``aten._scaled_dot_product_flash_attention_for_cpu``,
  which has no registered formula (it would count 0). :data:`EXTRA_FORMULAS` adds it and its
  backward with PyTorch's own SDPA formulas.
- A selective scan written in plain PyTorch is elementwise work the registry ignores (or, where
  it uses small matmuls, prices wrongly). Any module class or function registered with
  :func:`register_analytic_cost` is priced by a formula instead; the ops it runs inside are not
  counted. The Mamba scan is registered with :func:`selective_scan_flop`, ``9·B·L·D·N`` (the
  estimate used by the ``mamba_ssm`` authors).

Conventions (REFERENCE.md §6): FLOP = 2 × MAC; BOP = Σ MAC × b_w × b_a for an op with a weight,
Σ MAC × b_a × b_a for a product of two activations (attention scores, the scan); a 32-bit MAC is
1024 BOP. Bit widths come from a :class:`BitWidths` rule list matched against the innermost
module's qualified name or class name; without a matching rule an op uses the bit width of its
floating-point inputs (32 for fp32, 16 for bf16/fp16).

Example
-------
>>> import torch
>>> from torch import nn
>>> layer = nn.Linear(8, 4)
>>> with CostCounter(layer) as counter:
...     _ = layer(torch.randn(3, 8))
>>> counter.total_mac(), counter.total_bop()
(96, 98304)
>>> with CostCounter(layer, bit_widths=BitWidths({"type:Linear": (1, 1)})) as counter:
...     _ = layer(torch.randn(3, 8))
>>> counter.total_bop()
96
"""

import fnmatch
import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import (
    flop_registry,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

aten = torch.ops.aten

# Peak dense rates of one NVIDIA A100 (SXM, 40/80 GB), in operations per second (a MAC is two
# operations), from "NVIDIA A100 Tensor Core GPU Architecture" (whitepaper, 2020), Table 1
# and the A100 datasheet: FP32 19.5 TFLOPS, TF32 tensor 156, FP16/BF16 tensor 312, INT8 624,
# INT4 1248, INT1 (binary) 4992 TOPS. Sparsity-doubled rates are not used.
A100_PEAK_OPS = {
    "fp32": 19.5e12,
    "tf32": 156e12,
    "fp16": 312e12,
    "int8": 624e12,
    "int4": 1248e12,
    "int1": 4992e12,
}


def sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOP of the CPU fused attention kernel (same math as the CUDA kernels' formula)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def sdpa_cpu_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    """FLOP of the CPU fused attention kernel's backward."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _shapes(formula: Callable) -> Callable:
    """Call ``formula`` with tensor shapes in place of tensors (the registry's convention)."""

    @functools.wraps(formula)
    def wrapped(*args, out_val=None, **kwargs):
        to_shape = lambda a: a.shape if isinstance(a, torch.Tensor) else a  # noqa: E731
        args = torch.utils._pytree.tree_map(to_shape, args)
        kwargs = torch.utils._pytree.tree_map(to_shape, kwargs)
        return formula(*args, out_shape=torch.utils._pytree.tree_map(to_shape, out_val), **kwargs)

    return wrapped


#: Formulas added to ``torch.utils.flop_counter.flop_registry`` (op packet -> FLOP function).
EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _shapes(sdpa_cpu_flop),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _shapes(sdpa_cpu_backward_flop),
}


def selective_scan_flop(batch: int, length: int, d_inner: int, d_state: int) -> int:
    """FLOP of one selective scan: ``9·B·L·D·N``.

    Per step and (channel, state) pair: discretise ``exp(Δ·A)`` (2), ``Δ·B·x`` (2), the
    recurrence ``h = Ā·h + B̄x`` (2) and the read-out ``C·h`` summed over the state (2, plus one
    for the skip/gating share): the count the ``mamba_ssm`` authors use.

    >>> selective_scan_flop(2, 100, 64, 16)
    1843200
    """
    return 9 * batch * length * d_inner * d_state


def scan_call_flop(inputs, output, module) -> int:
    """:func:`selective_scan_flop` of a ``selective_scan(x, delta, A, B, C, ...)`` call: ``x`` holds
    B·L·D elements in either layout, ``A`` is (d_inner, d_state).
    """
    x, A = inputs[0], inputs[2]
    return 9 * x.numel() * A.shape[-1]


@dataclass(frozen=True)
class AnalyticCost:
    """A formula pricing a module's (or function's) whole call.

    ``flop(inputs, output, module)`` returns the FLOP of the call; every op that runs inside is
    then left uncounted. ``kind`` is ``"activation"`` (a product of two activations, priced at
    ``b_a × b_a`` per MAC) or ``"weight"``.
    """

    flop: Callable
    kind: str = "activation"


_ANALYTIC_MODULES: dict[str, AnalyticCost] = {}
_ANALYTIC_FUNCTIONS: dict[str, AnalyticCost] = {}


def register_analytic_cost(target: str, flop: Callable, *, kind: str = "activation") -> None:
    """Price every call of ``target`` with ``flop(inputs, output, module)`` instead of its ops.

    Arguments
    ---------
    target : str
        ``"package.module.ClassName"`` (an ``nn.Module`` class: its forward calls are priced;
        ``module`` is the instance, ``inputs`` the positional arguments) or
        ``"package.module:function"`` (a module-level function, swapped for a pricing wrapper
        while a :class:`CostCounter` is active; ``module`` is None).
    flop : callable
        ``flop(inputs, output, module) -> int``.
    kind : str
        ``"activation"`` or ``"weight"`` (see :class:`AnalyticCost`).
    """
    if kind not in ("activation", "weight"):
        raise ValueError(f"kind must be 'activation' or 'weight', got {kind!r}")
    table = _ANALYTIC_FUNCTIONS if ":" in target else _ANALYTIC_MODULES
    table[target] = AnalyticCost(flop=flop, kind=kind)


#: Every selective-scan entry point of the package (the pure-PyTorch paths and the CUDA kernel),
#: as the Mamba mixer looks them up.
SCAN_TARGETS = (
    "speechbrain_ext.nnet.mixers.mamba:selective_scan",
    "speechbrain_ext.nnet.mixers.mamba:mamba_ssm_selective_scan",
    "speechbrain_ext.nnet.selective_scan:selective_scan",
    "speechbrain_ext.nnet.selective_scan:selective_scan_chunked",
    "speechbrain_ext.nnet.selective_scan:selective_scan_fused_cpu",
    "speechbrain_ext.nnet.selective_scan:selective_scan_reference",
)


def analytic_targets() -> list[str]:
    """Every registered analytic target."""
    return sorted(_ANALYTIC_MODULES) + sorted(_ANALYTIC_FUNCTIONS)


for _target in SCAN_TARGETS:
    register_analytic_cost(_target, scan_call_flop)


def depthwise_conv_call_flop(inputs, output, module) -> int:
    """FLOP of a ``depthwise_conv1d(x, weight, ...)`` call: 2 · B·L·D · k (one MAC per tap)."""
    x, weight = inputs[0], inputs[1]
    return 2 * x.numel() * weight.shape[-1]


#: The Mamba mixer's channels-last depthwise convolution (shifted multiply-adds, which the
#: registry would not count).
register_analytic_cost(
    "speechbrain_ext.nnet.mixers.mamba:depthwise_conv1d", depthwise_conv_call_flop, kind="weight"
)


def _qualname(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class BitWidths:
    """Per-layer bit widths: an ordered mapping of pattern -> (weight_bits, activation_bits).

    A pattern is matched (``fnmatch``) against a module's qualified name inside the profiled
    model (``"encoder.layers.3.mixer.in_proj"``; the root is ``""``), or, written
    ``"type:ClassName"``, against the class names of the module's type and its bases. The first
    matching rule wins; a module without a match uses its inputs' floating-point width for both.

    Arguments
    ---------
    rules : mapping
        ``{pattern: (weight_bits, activation_bits)}``.

    Example
    -------
    >>> from torch import nn
    >>> bits = BitWidths({"frontend.*": (32, 32), "type:Linear": (1, 1)})
    >>> bits.lookup("encoder.ffn", nn.Linear(2, 2))
    (1, 1)
    >>> bits.lookup("frontend.proj", nn.Linear(2, 2))
    (32, 32)
    >>> bits.lookup("encoder.norm", nn.LayerNorm(2)) is None
    True
    """

    def __init__(self, rules: Mapping[str, tuple[int, int]] | None = None):
        self.rules = dict(rules or {})
        for pattern, widths in self.rules.items():
            if len(widths) != 2 or not all(isinstance(b, int) and 1 <= b <= 64 for b in widths):
                raise ValueError(
                    f"bit widths for {pattern!r} must be (weight_bits, activation_bits) "
                    f"integers in 1..64, got {widths!r}"
                )

    def lookup(self, name: str, module: nn.Module | None) -> tuple[int, int] | None:
        """The (weight_bits, activation_bits) of the first rule matching, or None."""
        type_names = [c.__name__ for c in type(module).__mro__] if module is not None else []
        for pattern, widths in self.rules.items():
            if pattern.startswith("type:"):
                wanted = pattern[len("type:") :]
                if any(fnmatch.fnmatchcase(t, wanted) for t in type_names):
                    return tuple(widths)
            elif fnmatch.fnmatchcase(name, pattern):
                return tuple(widths)
        return None

    def __repr__(self) -> str:
        return f"BitWidths({self.rules!r})"


#: Layers whose matmul/convolution ops always have a weight operand.
WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)

#: Weight-carrying layer types binarized by a W1A1 (BiT) configuration.
QUANTIZED_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d")


def w1a1(*, keep_fp32: tuple[str, ...] = ()) -> BitWidths:
    """The W1A1 configuration of Study A: every linear/convolution layer, and every product of
    two activations, at 1-bit weights and activations; norms, embeddings and the layers whose
    names match ``keep_fp32`` stay 32-bit.

    >>> w1a1(keep_fp32=("frontend.*",)).rules["frontend.*"]
    (32, 32)
    """
    rules = {pattern: (32, 32) for pattern in keep_fp32}
    rules.update({f"type:{name}": (1, 1) for name in QUANTIZED_LAYER_TYPES})
    rules["*"] = (32, 1)  # activation products (attention, scan) inside any other module
    return BitWidths(rules)


@dataclass
class OpCost:
    """One counted op: where it ran, what it cost and at which bit widths."""

    module: str
    op: str
    flop: int
    kind: str  # "weight" (one operand is a parameter) or "activation"
    weight_bits: int
    activation_bits: int

    @property
    def mac(self) -> int:
        """Multiply-accumulates (FLOP / 2)."""
        return self.flop // 2

    @property
    def bop(self) -> int:
        """Bit operations of this op."""
        if self.kind == "weight":
            return self.mac * self.weight_bits * self.activation_bits
        return self.mac * self.activation_bits * self.activation_bits

    @property
    def op_bits(self) -> int:
        """The widest operand, which decides the hardware rate."""
        if self.kind == "weight":
            return max(self.weight_bits, self.activation_bits)
        return self.activation_bits


def _dtype_bits(args) -> int:
    bits = 32
    for leaf in torch.utils._pytree.tree_leaves(args):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            return leaf.element_size() * 8
    return bits


class _Dispatch(TorchDispatchMode):
    def __init__(self, counter: "CostCounter"):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        registry = self.counter.formulas
        if packet not in registry:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if packet in registry and not self.counter._suppressed:
            flop = int(registry[packet](*args, **kwargs, out_val=out))
            self.counter._record(str(packet).split(".")[-1], flop, args)
        return out


class CostCounter:
    """Context manager counting the cost of every op run under it (see the module docstring).

    Arguments
    ---------
    model : nn.Module
        The model whose submodules name the ops (hooks are added on entry, removed on exit).
    bit_widths : BitWidths, optional
        Per-layer bit widths; by default each op uses its inputs' floating-point width.

    Attributes
    ----------
    ops : list of OpCost
        Every counted op, in order.
    """

    def __init__(self, model: nn.Module, *, bit_widths: BitWidths | None = None):
        self.model = model
        self.bit_widths = bit_widths or BitWidths()
        self.formulas = {**flop_registry, **EXTRA_FORMULAS}
        self.ops: list[OpCost] = []
        self._stack: list[tuple[str, nn.Module]] = []
        self._suppressed = 0
        self._handles = []
        self._patched = []
        self._param_storages: set[int] = set()
        self._mode = None

    # -- module tracking -------------------------------------------------------------------
    def _pre_hook(self, name):
        def hook(module, inputs):
            self._stack.append((name, module))
            if _qualname(module) in _ANALYTIC_MODULES:
                self._suppressed += 1

        return hook

    def _post_hook(self, name):
        def hook(module, inputs, output):
            if self._stack and self._stack[-1][1] is module:
                self._stack.pop()
            cost = _ANALYTIC_MODULES.get(_qualname(module))
            if cost is not None:
                self._suppressed -= 1
                if not self._suppressed:
                    self._record_analytic(cost, inputs, output, module, name, module)

        return hook

    def _function_wrapper(self, target: str, function: Callable, cost: AnalyticCost):
        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            self._suppressed += 1
            try:
                output = function(*args, **kwargs)
            finally:
                self._suppressed -= 1
            if not self._suppressed:
                name, module = self._stack[-1] if self._stack else ("", None)
                self._record_analytic(cost, args, output, None, name, module, op=target)
            return output

        return wrapped

    # -- recording -------------------------------------------------------------------------
    def _widths(self, name: str, module: nn.Module | None, default_bits: int) -> tuple[int, int]:
        widths = self.bit_widths.lookup(name, module)
        return widths if widths is not None else (default_bits, default_bits)

    def _record(self, op: str, flop: int, args) -> None:
        name, module = self._stack[-1] if self._stack else ("", None)
        # A parameter operand, or a weight layer whose weight is recomputed on each call
        # (weight norm and other parametrizations).
        # Quantized layers (speechbrain_ext.quant) multiply by a freshly quantized weight.
        is_weight = isinstance(module, WEIGHT_LAYERS) or hasattr(module, "weight_quantizers")
        is_weight = is_weight or any(
            isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() in self._param_storages
            for a in torch.utils._pytree.tree_leaves(args)
        )
        w_bits, a_bits = self._widths(name, module, _dtype_bits(args))
        kind = "weight" if is_weight else "activation"
        self.ops.append(OpCost(name, op, flop, kind, w_bits, a_bits))

    def _record_analytic(self, cost, inputs, output, module, name, owner, op=None) -> None:
        flop = int(cost.flop(inputs, output, module))
        w_bits, a_bits = self._widths(name, owner, _dtype_bits(inputs))
        op = op or _qualname(module)
        self.ops.append(OpCost(name, op, flop, cost.kind, w_bits, a_bits))

    # -- context ---------------------------------------------------------------------------
    def __enter__(self):
        self.ops = []
        self._param_storages = {
            p.untyped_storage().data_ptr() for p in self.model.parameters() if p.numel()
        }
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._post_hook(name)))
        for target, cost in _ANALYTIC_FUNCTIONS.items():
            module_path, attr = target.split(":")
            try:
                owner = importlib.import_module(module_path)
            except ImportError:
                continue
            original = getattr(owner, attr, None)
            if callable(original):
                setattr(owner, attr, self._function_wrapper(target, original, cost))
                self._patched.append((owner, attr, original))
        self._mode = _Dispatch(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        for handle in self._handles:
            handle.remove()
        for owner, attr, original in self._patched:
            setattr(owner, attr, original)
        self._handles, self._patched, self._stack = [], [], []
        self._suppressed = 0
        return False

    # -- totals ----------------------------------------------------------------------------
    def total_flop(self) -> int:
        """Σ FLOP over every op, whatever its bit width (2 × :meth:`total_mac`)."""
        return sum(o.flop for o in self.ops)

    def float_flop(self) -> int:
        """FLOP of floating-point ops only (widest operand ≥ 16 bits); quantized ops are BOP."""
        return sum(o.flop for o in self.ops if o.op_bits >= 16)

    def total_mac(self) -> int:
        """Σ MAC."""
        return sum(o.mac for o in self.ops)

    def total_bop(self) -> int:
        """Σ BOP."""
        return sum(o.bop for o in self.ops)

    def by_module(self, depth: int = 2) -> dict[str, int]:
        """FLOP summed per module name prefix of ``depth`` components."""
        totals: dict[str, int] = {}
        for o in self.ops:
            key = ".".join(o.module.split(".")[:depth]) if o.module else "(root)"
            totals[key] = totals.get(key, 0) + o.flop
        return totals

    def estimated_time(self, *, peaks: Mapping[str, float] = A100_PEAK_OPS, fp32: str = "tf32"):
        """Seconds at peak rate: every op's 2·MAC divided by the rate of its widest operand
        (1 bit: ``int1``; ≤4: ``int4``; ≤8: ``int8``; ≤16: ``fp16``; wider: ``fp32``, which names
        the rate used for 32-bit ops, ``"tf32"`` by default).
        """
        if fp32 not in peaks:
            raise KeyError(f"unknown fp32 rate {fp32!r}; valid: {', '.join(peaks)}")
        seconds = 0.0
        for o in self.ops:
            bits = o.op_bits
            rate = (
                peaks["int1"]
                if bits <= 1
                else peaks["int4"]
                if bits <= 4
                else peaks["int8"]
                if bits <= 8
                else peaks["fp16"]
                if bits <= 16
                else peaks[fp32]
            )
            seconds += o.flop / rate
        return seconds


def storage_bytes(model: nn.Module, bit_widths: BitWidths | None = None) -> float:
    """Bytes needed to store ``model``'s parameters at the given bit widths.

    A parameter named ``weight`` in a module with a rule is stored at the rule's weight bits; other
    parameters (biases, norm scales, learned position tensors) at their dtype's width. Every
    weight stored below 16 bits adds one 32-bit scale (BiT: per-tensor mean |W|) and, when that
    layer's input activations are quantized below 16 bits, a 32-bit scale and shift (α, β).

    >>> from torch import nn
    >>> layer = nn.Linear(64, 32)
    >>> storage_bytes(layer)
    8320.0
    >>> storage_bytes(layer, BitWidths({"type:Linear": (1, 1)}))  # 2048/8 + 128 + 4 + 8
    396.0
    """
    bit_widths = bit_widths or BitWidths()
    total_bits = 0
    for name, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # counted with the module it parametrizes
        widths = bit_widths.lookup(name, module)
        own = list(module.named_parameters(recurse=False))
        if parametrize.is_parametrized(module):  # e.g. weight norm: originals stand for "weight"
            for pname, originals in module.parametrizations.items():
                own += [(pname, p) for p in originals.parameters()]
        for pname, param in own:
            dtype_bits = param.element_size() * 8
            if widths is not None and pname == "weight":
                total_bits += param.numel() * widths[0]
                if widths[0] < 16:
                    total_bits += 32 + (64 if widths[1] < 16 else 0)
            else:
                total_bits += param.numel() * dtype_bits
    return total_bits / 8


def count_step_flop(model: nn.Module, step: Callable[[], object]) -> int:
    """FLOP of one call of ``step()`` (a forward, or a whole training step) on ``model``.

    Every op run inside ``step`` is priced, the backward pass's too when ``step`` calls
    ``backward`` (matmuls, convolutions and fused attention have registered backward formulas;
    an analytic cost such as the Mamba scan prices its forward only, its backward is uncounted).
    Optimiser updates and other elementwise work are not counted, as everywhere here. The
    benchmarks call this once per configuration, outside the timed runs.

    >>> layer = nn.Linear(8, 4)
    >>> x = torch.randn(3, 8)
    >>> count_step_flop(layer, lambda: layer(x))
    192
    >>> count_step_flop(layer, lambda: layer(x).sum().backward())  # + the weight's gradient
    384
    """
    with CostCounter(model) as counter:
        step()
    return counter.total_flop()


def try_count_step_flop(model: nn.Module, step: Callable[[], object]) -> int | str:
    """:func:`count_step_flop`, or ``""`` (and a warning on stderr) where counting fails: the
    benchmarks' FLOP column is extra, and a failed count must not lose a measured time.

    >>> try_count_step_flop(nn.Linear(2, 2), lambda: 1 / 0)
    ''
    """
    try:
        return count_step_flop(model, step)
    except Exception as error:  # noqa: BLE001 - see the docstring
        print(f"FLOP count failed: {type(error).__name__}: {error}", file=sys.stderr)
        return ""
