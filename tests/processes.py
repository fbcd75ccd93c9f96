"""Helpers for tests that kill a training run and check that rerunning it resumes."""

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def kill_when(
    command: list[str],
    ready: Callable[[], bool],
    *,
    cwd: Path,
    env: dict,
    console: Path,
    timeout: float = 240.0,
) -> None:
    """Start ``command``, SIGKILL it as soon as ``ready()`` holds (or after ``timeout`` seconds,
    or when it has ended by itself); its output goes to the file ``console``.
    """
    with open(console, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        try:
            while time.time() < deadline and proc.poll() is None and not ready():
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
