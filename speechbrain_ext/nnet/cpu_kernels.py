"""Optional C++ kernels for the CPU, compiled on first use (the fused selective scan).

:func:`selective_scan_cpu_kernel` returns the compiled module of ``csrc/selective_scan_cpu.cpp``,
building it the first time with ``torch.utils.cpp_extension.load`` (the machine's C++ compiler,
``-O3 -march=native -fopenmp``) into torch's extension cache (``TORCH_EXTENSIONS_DIR``, by
default ``~/.cache/torch_extensions``), where later processes find it built. The source includes
only pybind11, not the torch headers, so a build from scratch takes seconds. The cache entry's
name carries a hash of the CPU's feature flags, so a cache shared between machines never hands a
CPU code built for another one.

When the build or the import fails (no compiler, no ninja, a compile error) the kernel is
``None``, one ``RuntimeWarning`` says why, and callers use the pure-PyTorch scan. Setting the
environment variable ``SPEECHBRAIN_EXT_NO_CPU_KERNELS=1`` (or calling
``set_cpu_kernels_enabled(False)``) forces that fallback without building anything.

Example
-------
>>> from speechbrain_ext.nnet import cpu_kernels
>>> kernel = cpu_kernels.selective_scan_cpu_kernel()  # built once, then cached
>>> kernel is None or kernel.max_state >= 16
True
"""

import hashlib
import logging
import os
import shutil
import threading
import warnings
from pathlib import Path

DISABLE_ENV = "SPEECHBRAIN_EXT_NO_CPU_KERNELS"
"""Environment variable: a value other than "", "0" or "false" forces the pure-PyTorch paths."""

SOURCE = Path(__file__).resolve().parent / "csrc" / "selective_scan_cpu.cpp"
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=fast")
LDFLAGS = ("-fopenmp",)

_lock = threading.Lock()
_state = {"tried": False, "module": None, "error": None, "enabled": None}


def cpu_kernels_enabled() -> bool:
    """Whether the C++ kernels may be used: ``set_cpu_kernels_enabled``, else the environment."""
    if _state["enabled"] is not None:
        return _state["enabled"]
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("", "0", "false", "no")


def set_cpu_kernels_enabled(enabled: bool | None) -> None:
    """Allow (``True``) or forbid (``False``) the C++ kernels; ``None``: as the environment says."""
    _state["enabled"] = enabled


def _cpu_signature() -> str:
    """A short hash of the CPU's model and feature flags (what ``-march=native`` depends on)."""
    text = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "model name", "Features", "CPU part")):
                text += line + "\n"
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        import platform

        text = platform.processor() + platform.machine()
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def extension_name() -> str:
    """The name of the cached build (one per CPU type)."""
    return f"sbext_selective_scan_cpu_{_cpu_signature()}"


def build_selective_scan_cpu():
    """Compile (or load from the cache) and import the fused scan; raises on any failure."""
    if shutil.which("ninja") is None:  # torch builds with ninja; the PyPI wheel ships one
        try:
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except ImportError:
            pass
    # Importing cpp_extension logs a warning about CUDA_HOME on machines without CUDA: noise here.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension.load(
        name=extension_name(),
        sources=[str(SOURCE)],
        extra_cflags=list(CFLAGS),
        extra_ldflags=list(LDFLAGS),
        verbose=False,
    )


def selective_scan_cpu_kernel():
    """The compiled fused-scan module, or ``None`` (disabled, or the build failed: warned once)."""
    if not cpu_kernels_enabled():
        return None
    if _state["tried"]:
        return _state["module"]
    with _lock:
        if not _state["tried"]:
            try:
                _state["module"] = build_selective_scan_cpu()
            except Exception as error:  # no compiler, no ninja, compile or import error
                _state["error"] = error
                message = str(error).strip().splitlines()
                warnings.warn(
                    "speechbrain_ext: the fused CPU selective scan could not be built "
                    f"({type(error).__name__}: {message[-1] if message else ''}); using the "
                    f"pure-PyTorch scan instead (set {DISABLE_ENV}=1 to skip the build)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            _state["tried"] = True
    return _state["module"]


def build_error() -> Exception | None:
    """Why the last build failed (``None`` if it did not fail or was not tried)."""
    return _state["error"]


def reset() -> None:
    """Forget the build result (the next call builds or loads again); for tests."""
    with _lock:
        _state.update(tried=False, module=None, error=None)
