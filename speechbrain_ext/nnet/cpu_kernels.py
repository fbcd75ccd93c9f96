"""Optional C++ kernels for the CPU, compiled on first use.

A :class:`CpuKernel` names one C++ source (``csrc/*.cpp`` of a package folder) and builds it the
first time :meth:`CpuKernel.get` is called, with ``torch.utils.cpp_extension.load`` (the
machine's C++ compiler, ``-O3 -march=native -fopenmp``) into torch's extension cache
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), where later processes find
it built. The sources include only pybind11, not the torch headers, so a build from scratch
takes seconds. The cache entry's name carries a hash of the CPU's feature flags, so a cache
shared between machines never hands a CPU code built for another one.

Two kernels exist: :data:`SELECTIVE_SCAN` (Mamba's fused scan,
:mod:`speechbrain_ext.nnet.selective_scan`) and, declared next to the quantizers that use it,
the fused elastic activation quantizers (:mod:`speechbrain_ext.quant.quantizers._elastic`).

When the build or the import fails (no compiler, no ninja, a compile error) the kernel is
``None``, one ``RuntimeWarning`` says why, and callers use their pure-PyTorch path. Setting the
environment variable ``SPEECHBRAIN_EXT_NO_CPU_KERNELS=1`` (or calling
``set_cpu_kernels_enabled(False)``) forces that fallback for every kernel without building
anything.

Example
-------
>>> from speechbrain_ext.nnet import cpu_kernels
>>> kernel = cpu_kernels.selective_scan_cpu_kernel()  # built once, then cached
>>> kernel is None or kernel.max_state >= 16
True
>>> cpu_kernels.SELECTIVE_SCAN.name.startswith("sbext_selective_scan_cpu_")
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

CFLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=fast")
LDFLAGS = ("-fopenmp",)

_enabled: dict = {"value": None}


def cpu_kernels_enabled() -> bool:
    """Whether the C++ kernels may be used: ``set_cpu_kernels_enabled``, else the environment."""
    if _enabled["value"] is not None:
        return _enabled["value"]
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("", "0", "false", "no")


def set_cpu_kernels_enabled(enabled: bool | None) -> None:
    """Allow (``True``) or forbid (``False``) the C++ kernels; ``None``: as the environment says."""
    _enabled["value"] = enabled


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


def _cpp_extension():
    """``torch.utils.cpp_extension``, with ninja on the PATH when only its wheel is installed."""
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
    return cpp_extension


class CpuKernel:
    """One C++ source, built on first use and cached; ``None`` with one warning if it fails.

    Arguments
    ---------
    stem : str
        Name of the build (``sbext_<stem>_<CPU hash>`` in the extension cache).
    source : str or Path
        The C++ file (pybind11 module named ``TORCH_EXTENSION_NAME``).
    what : str
        What the kernel is, for the warning ("the fused CPU <what> could not be built").
    fallback : str
        What runs instead, for the warning ("using <fallback> instead").
    cflags : tuple of str
        Compiler flags (default :data:`CFLAGS`).
    """

    def __init__(self, stem: str, source, *, what: str, fallback: str, cflags=CFLAGS):
        self.stem, self.source = stem, Path(source)
        self.what, self.fallback, self.cflags = what, fallback, tuple(cflags)
        self._lock = threading.Lock()
        self.tried, self.module, self.error = False, None, None

    @property
    def name(self) -> str:
        """The name of the cached build (one per CPU type)."""
        return f"sbext_{self.stem}_{_cpu_signature()}"

    def build(self):
        """Compile (or load from the cache) and import the module; raises on any failure."""
        return _cpp_extension().load(
            name=self.name,
            sources=[str(self.source)],
            extra_cflags=list(self.cflags),
            extra_ldflags=list(LDFLAGS),
            verbose=False,
        )

    def get(self):
        """The compiled module, or ``None`` (disabled, or the build failed: warned once)."""
        if not cpu_kernels_enabled():
            return None
        if self.tried:
            return self.module
        with self._lock:
            if not self.tried:
                try:
                    self.module = self.build()
                except Exception as error:  # no compiler, no ninja, compile or import error
                    self.error = error
                    message = str(error).strip().splitlines()
                    warnings.warn(
                        f"speechbrain_ext: the fused CPU {self.what} could not be built "
                        f"({type(error).__name__}: {message[-1] if message else ''}); using "
                        f"{self.fallback} instead (set {DISABLE_ENV}=1 to skip the build)",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                self.tried = True
        return self.module

    def reset(self) -> None:
        """Forget the build result (the next call builds or loads again); for tests."""
        with self._lock:
            self.tried, self.module, self.error = False, None, None


#: Mamba's fused selective scan (``csrc/selective_scan_cpu.cpp``).
SELECTIVE_SCAN = CpuKernel(
    "selective_scan_cpu",
    Path(__file__).resolve().parent / "csrc" / "selective_scan_cpu.cpp",
    what="selective scan",
    fallback="the pure-PyTorch scan",
)
SOURCE = SELECTIVE_SCAN.source


def selective_scan_cpu_kernel():
    """The compiled fused-scan module, or ``None`` (disabled, or the build failed: warned once)."""
    return SELECTIVE_SCAN.get()


def build_error() -> Exception | None:
    """Why the scan's last build failed (``None`` if it did not fail or was not tried)."""
    return SELECTIVE_SCAN.error
