"""Helpers for the recipe smoke tests: a tiny corpus, and running a recipe's real train.py."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def synthetic_corpus(root: Path) -> list[str]:
    """Harmonic tones with moving pitch, in SpeechBrain manifests (corpus fallback)."""
    rng = np.random.default_rng(0)
    args = []
    for split, count in (("train", 10), ("valid", 3), ("test", 3)):
        lines = ["ID,duration,wav,spk_id"]
        for index in range(count):
            seconds = 1.5 + rng.random()
            t = np.arange(int(seconds * 16000)) / 16000
            f0 = 120 + 80 * rng.random() + 20 * np.sin(2 * np.pi * 3 * t)
            phase = 2 * np.pi * np.cumsum(f0) / 16000
            wav = 0.1 * sum(np.sin(k * phase) / k for k in range(1, 6))
            path = root / split / f"{split}{index}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wav.astype("float32"), 16000)
            lines.append(f"{split}{index},{seconds:.3f},{path},{split}{index % 2}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
        args.append(f"--{split}_csv={root / f'{split}.csv'}")
    return args


def tiny_corpus_args(root: Path) -> list[str]:
    """Arguments pointing a recipe at a 2-minute built-in corpus (or tones without eSpeak)."""
    try:
        from speechbrain_ext.corpus import EspeakUnavailableError, ensure_builtin_corpus
    except ImportError:
        return synthetic_corpus(root)
    try:
        ensure_builtin_corpus(root / "builtin", minutes=2, progress=False)
    except EspeakUnavailableError:
        return synthetic_corpus(root)
    return [f"--builtin_folder={root / 'builtin'}", "--builtin_minutes=2"]


def recipe_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("RANK", None)
    env.pop("LOCAL_RANK", None)
    return env


def run_recipe(recipe: Path, yaml: str, output: Path, *args, launcher=(), check=True, timeout=300):
    """Run ``recipe/train.py hparams/<yaml>`` into ``output``; returns the CompletedProcess."""
    command = [
        *(launcher or [sys.executable]),
        "train.py",
        f"hparams/{yaml}",
        f"--output_folder={output}",
        *args,
    ]
    proc = subprocess.run(
        command, cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def logged_steps(output: Path) -> list[tuple[int, float]]:
    """(step, loss) of every per-interval line of train_log.txt."""
    text = (output / "train_log.txt").read_text()
    return [
        (int(step), float(loss))
        for step, loss in re.findall(r"^step: (\d+) - train loss: ([^,]+),", text, re.M)
    ]
