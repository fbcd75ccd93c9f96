"""Time and peak memory of one configuration, measured in a fresh subprocess.

A process's peak resident set only grows, so each configuration runs in its own Python process:
:func:`run_isolated` starts ``python -m speechbrain_ext.bench.memory`` with a job (a
``"package.module:function"`` target and JSON keyword arguments), waits at most ``timeout``
seconds, and returns the job's result dictionary, or a ``status`` of ``"skipped (timeout)"``,
``"skipped (oom)"`` or ``"error: ..."`` instead of raising.

Inside the job, :func:`measure` times a step function and reads the peak memory:

- CPU: the resident set (``VmRSS``) after the model and inputs are built is the baseline; the
  peak (``VmHWM``) is reset to it through ``/proc/self/clear_refs`` where the kernel allows it
  (Linux ≥ 4.0), and the peak after the timed runs minus the baseline is reported.
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
  allocated before the first step.

Example
-------
>>> import torch
>>> result = measure(lambda: torch.ones(1000).sum(), device="cpu", warmup=1, reps=3)
>>> sorted(result)
['peak_mb', 'time_s', 'times_s']
>>> len(result["times_s"])
3
"""

import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

RESULT_PREFIX = "BENCH_RESULT "


OOM_STATUS = "skipped (oom)"  # a configuration that ran out of memory


def _status_kib(field: str) -> int | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/self/status``, or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """Current resident set size in MB (1e6 bytes); falls back to ``ru_maxrss``."""
    kib = _status_kib("VmRSS")
    if kib is None:
        return peak_rss_mb()
    return kib * 1024 / 1e6


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (``VmHWM``, else ``ru_maxrss``)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":  # bytes there
            kib //= 1024
    return kib * 1024 / 1e6


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def synchronize(device: str) -> None:
    """Wait for queued work on ``device`` (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[], object], *, device: str, warmup: int, reps: int) -> dict:
    """Median time and peak extra memory of ``step()`` (model and inputs already built).

    Arguments
    ---------
    step : callable
        Runs one forward (or training step).
    device : str
        ``"cpu"`` or a CUDA device.
    warmup, reps : int
        Untimed and timed calls.

    Returns
    -------
    dict
        ``time_s`` (median), ``times_s`` (all timed runs), ``peak_mb`` (peak memory above the
        baseline, MB = 1e6 bytes).
    """
    if reps < 1 or warmup < 0:
        raise ValueError(f"need reps >= 1 and warmup >= 0, got reps={reps}, warmup={warmup}")
    is_cuda = torch.device(device).type == "cuda"
    synchronize(device)
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = rss_mb()
        if not reset_peak_rss():
            base = max(base, peak_rss_mb())  # peak of model building; the best we can do
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    if is_cuda:
        peak = (torch.cuda.max_memory_allocated(device) - base) / 1e6
    else:
        peak = peak_rss_mb() - base
    return {"time_s": statistics.median(times), "times_s": times, "peak_mb": max(peak, 0.0)}


def resolve(target: str) -> Callable:
    """The function named ``"package.module:function"``."""
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:function', got {target!r}")
    module_name, attr = target.split(":", 1)
    return getattr(importlib.import_module(module_name), attr)


def run_isolated(
    target: str,
    kwargs: dict,
    *,
    timeout: float,
    in_process: bool = False,
    max_memory_mb: float | None = None,
    env=None,
) -> dict:
    """Run ``target(**kwargs)`` (which returns a JSON-serialisable dict) in a fresh process.

    Arguments
    ---------
    target : str
        ``"package.module:function"``.
    kwargs : dict
        JSON-serialisable keyword arguments.
    timeout : float
        Seconds before the child is killed and ``"skipped (timeout)"`` returned.
    in_process : bool
        Call the function in this process instead (no isolation: peak memory then includes
        whatever this process held before; for debugging).
    max_memory_mb : float, optional
        Cap on the child's data segment (``RLIMIT_DATA``: heap and anonymous mappings, Linux ≥
        4.7), so that a configuration too large for the machine fails with an allocation error
        (reported ``"skipped (oom)"``) instead of swapping or waking the OOM killer.
    env : dict, optional
        Environment of the child (default: this process's).

    Returns
    -------
    dict
        The function's result with ``status`` ``"ok"`` (unless the function set its own, e.g.
        :data:`OOM_STATUS` on a caught ``torch.OutOfMemoryError``), or only a ``status`` saying
        why not.
    """
    if in_process:
        try:
            return {"status": "ok", **resolve(target)(**kwargs)}
        except (RuntimeError, MemoryError) as error:
            return {"status": _failure_status(str(error))}
    job = json.dumps({"target": target, "kwargs": kwargs, "max_memory_mb": max_memory_mb})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "speechbrain_ext.bench.memory", job],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"status": "skipped (timeout)"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return {"status": "ok", **json.loads(line[len(RESULT_PREFIX) :])}
    if proc.returncode in (-9, 137):  # SIGKILL: the kernel's OOM killer
        return {"status": OOM_STATUS}
    return {"status": _failure_status(proc.stderr)}


def available_memory_mb() -> float | None:
    """``MemAvailable`` of ``/proc/meminfo`` in MB, or None off Linux."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def _failure_status(message: str) -> str:
    lowered = message.lower()
    if any(
        text in lowered
        for text in ("out of memory", "cannot allocate memory", "can't allocate", "memoryerror")
    ):
        return OOM_STATUS
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return "error: " + (lines[-1][:300] if lines else "no output")


def _main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m speechbrain_ext.bench.memory JOB_JSON")
    job = json.loads(argv[0])
    if job.get("max_memory_mb"):
        import resource

        limit = int(job["max_memory_mb"] * 1e6)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        result = resolve(job["target"])(**job["kwargs"])
    except MemoryError:
        print("MemoryError: out of memory", file=sys.stderr)
        raise SystemExit(1) from None
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])


def add_measurement_arguments(
    parser, *, warmup: int, reps: int, timeout: float, quick_help: str
) -> None:
    """The options every benchmark command shares: repetitions, threads, isolation
    (``--timeout``, ``--max-memory-mb``, ``--in-process``, as taken by :func:`run_isolated`),
    the output folder and a ``--quick`` smoke run, with each command's own defaults.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_measurement_arguments(parser, warmup=1, reps=3, timeout=60.0, quick_help="tiny")
    >>> args = parser.parse_args(["--reps", "5", "--in-process"])
    >>> args.warmup, args.reps, args.timeout, args.in_process, args.out
    (1, 5, 60.0, True, 'benchmarks/results')
    """
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds per configuration")
    parser.add_argument(
        "--max-memory-mb",
        type=float,
        default=None,
        help="cap per configuration (CPU; default 80%% of available memory)",
    )
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="no fresh process per configuration (peak memory then unreliable)",
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)
