"""Opt-in ``torch.compile`` of an SSL model's encoder, falling back to eager on any failure.

:func:`compile_encoder` compiles the mixer stack only (``model.encoder.encoder`` of a BEST-RQ
or HuBERT model, or of a distillation model's ``student``): the features, front end, masking
and loss stay eager, since they hold data-dependent shapes (masks, lengths) that would break the
graph or recompile at every batch. The module is compiled in place with
:meth:`torch.nn.Module.compile`, so its parameters and ``state_dict`` keys are unchanged (no
``_orig_mod.`` prefix): checkpoints load with or without compilation.

``torch.compile`` is lazy: a backend that cannot compile (no C++ compiler for inductor, an
unsupported op) fails at the first call. The compiled call is therefore guarded: on the first
exception of the compiled path the module logs one warning, drops its compiled call and runs
eagerly from then on (the failing call included). A ``torch.compile`` that is missing or
refuses at once (an unknown backend, an unsupported Python) gives the same warning and an eager
module.

Example
-------
>>> from torch import nn
>>> layer = nn.Linear(4, 4)
>>> keys = list(layer.state_dict())
>>> compile_encoder(layer, backend="no_such_backend")  # refused: stays eager, with a warning
False
>>> list(layer.state_dict()) == keys and layer(torch.ones(1, 4)).shape == (1, 4)
True
"""

import functools
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


def encoder_to_compile(model: nn.Module) -> nn.Module:
    """The mixer stack of an SSL model: ``model.encoder.encoder`` (of ``model.student`` for a
    distillation model), else ``model`` itself where it has no such attribute.
    """
    model = getattr(model, "student", model)
    outer = getattr(model, "encoder", None)
    inner = getattr(outer, "encoder", None)
    return inner if isinstance(inner, nn.Module) else model


def compile_encoder(model: nn.Module, *, mode: str | None = "default", backend="inductor") -> bool:
    """Compile :func:`encoder_to_compile` of ``model`` in place; see the module docstring.

    Arguments
    ---------
    model : nn.Module
        An SSL model (or any module: then the module itself is compiled).
    mode : str, optional
        ``torch.compile`` mode (``default``, ``reduce-overhead``, ``max-autotune``...).
    backend : str or callable
        ``torch.compile`` backend (``inductor``; ``aot_eager`` traces without generating code).

    Returns
    -------
    bool
        True if compilation was set up (it may still fall back at the first call), False if it
        was refused at once (then ``model`` runs eagerly).
    """
    module = encoder_to_compile(model)
    name = type(module).__name__
    if not hasattr(torch, "compile"):
        logger.warning("--compile: this torch has no torch.compile; %s runs eagerly", name)
        return False
    options = {"backend": backend}
    if mode not in (None, "default"):
        options["mode"] = mode
    try:
        module.compile(**options)
        compiled = module._compiled_call_impl
    except Exception as error:  # noqa: BLE001 - any refusal means eager, never a crash
        module._compiled_call_impl = None
        logger.warning(
            "--compile: torch.compile of %s failed (%s: %s); it runs eagerly",
            name,
            type(error).__name__,
            error,
        )
        return False
    module._compiled_call_impl = _guarded(module, compiled)
    logger.info("--compile: %s compiled (backend %s, mode %s)", name, backend, mode)
    return True


def _guarded(module: nn.Module, compiled):
    """``compiled``, which on its first exception restores eager calls (one warning)."""

    @functools.wraps(compiled)
    def call(*args, **kwargs):
        if module._compiled_call_impl is not call:  # fell back already (or compiled again)
            return module._call_impl(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - see the module docstring
            module._compiled_call_impl = None
            logger.warning(
                "--compile: the compiled %s failed at its first calls (%s: %s); "
                "falling back to eager",
                type(module).__name__,
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )
            return module._call_impl(*args, **kwargs)

    return call


def is_compiled(model: nn.Module) -> bool:
    """Whether :func:`encoder_to_compile` of ``model`` still runs its compiled call."""
    return getattr(encoder_to_compile(model), "_compiled_call_impl", None) is not None
