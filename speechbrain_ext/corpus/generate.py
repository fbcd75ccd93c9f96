"""Generate the built-in corpus: plan, synthesize in worker processes, write manifests.

A folder being generated holds a ``.generating`` marker; ``corpus.json`` (settings and
totals) is written last, so a killed generation never looks complete and is redone by the
next call. :func:`ensure_builtin_corpus` reuses a complete corpus made with the same settings.
"""

import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from speechbrain_ext.corpus.espeak import get_espeak
from speechbrain_ext.corpus.manifests import write_corpus_manifests
from speechbrain_ext.corpus.tasks import plan_corpus

logger = logging.getLogger(__name__)

# Bump when a change alters the audio or manifests of a seed (3: phone alignments added).
CORPUS_VERSION = 3
MARKER = "corpus.json"
IN_PROGRESS = ".generating"
DEFAULT_MINUTES = 60.0
DEFAULT_SEED = 0


def read_marker(folder) -> dict | None:
    """The settings of the complete corpus in ``folder``, or ``None``."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _is_corpus(folder: Path) -> bool:
    return (folder / MARKER).is_file() or (folder / IN_PROGRESS).exists()


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    get_espeak()


def _render(args):
    from speechbrain_ext.corpus.render import render_job

    job, root = args
    return render_job(job, root)


def _render_all(jobs, root: Path, *, workers: int, progress: bool) -> list:
    results = []
    bar = tqdm(total=len(jobs), unit="clip", desc="built-in corpus", disable=not progress)
    seconds = 0.0

    def collect(job, output):
        nonlocal seconds
        row, extra = output
        results.append((job, row, extra))
        seconds += row["duration"]
        bar.update()
        bar.set_postfix(audio_min=f"{seconds / 60:.1f}", refresh=False)

    args = [(job, root) for job in jobs]
    try:
        if workers == 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as in the workers: results do not depend on threads
            try:
                for item in args:
                    collect(item[0], _render(item))
            finally:
                torch.set_num_threads(threads)
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_init_worker) as pool:
                for item, output in zip(args, pool.imap(_render, args, chunksize=4)):
                    collect(item[0], output)
    finally:
        bar.close()
    return results


def _check_settings(minutes, seed, workers) -> None:
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")


def generate_corpus(
    out, *, minutes: float, seed: int, workers: int = 2, progress: bool = True
) -> Path:
    """Synthesize the corpus into ``out`` (replacing a corpus already there); returns
    ``out`` resolved.

    Arguments
    ---------
    out : str or Path
        Target folder: absent, empty, or an earlier (complete or interrupted) corpus.
    minutes : float
        About how much audio to make (see ``docs/manifests.md`` for the shares per task).
    seed : int
        Random seed; the same seed gives byte-identical audio and manifests.
    workers : int
        Synthesis processes (1: in this process).
    progress : bool
        Show a progress bar.

    Raises
    ------
    ValueError
        Bad ``minutes``, ``seed`` or ``workers``.
    FileExistsError
        ``out`` is a file, or a non-empty folder that is not a built-in corpus.
    EspeakUnavailableError
        The eSpeak NG library cannot be loaded.
    """
    _check_settings(minutes, seed, workers)
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"corpus folder {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not _is_corpus(out):
            raise FileExistsError(
                f"corpus folder {out} is not empty and is not a built-in corpus (no "
                f"{MARKER}); choose an empty or new folder"
            )
        logger.info("replacing the earlier corpus in %s", out)
        shutil.rmtree(out)
    get_espeak()  # fail early, with a clear error, when eSpeak NG cannot be loaded
    jobs = plan_corpus(minutes, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / IN_PROGRESS).write_text(f"pid {os.getpid()}\n")
    start = time.perf_counter()
    results = _render_all(jobs, out, workers=workers, progress=progress)
    write_corpus_manifests(out, results, seed=seed)
    seconds_by_task: dict[str, float] = {}
    for job, row, _ in results:
        seconds_by_task[job.task] = seconds_by_task.get(job.task, 0.0) + row["duration"]
    total = sum(seconds_by_task.values())
    info = {
        "version": CORPUS_VERSION,
        "minutes": minutes,
        "seed": seed,
        "root": str(out),
        "clips": len(results),
        "audio_minutes": round(total / 60.0, 3),
        "audio_minutes_by_task": {
            k: round(v / 60.0, 3) for k, v in sorted(seconds_by_task.items())
        },
    }
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out / MARKER)
    (out / IN_PROGRESS).unlink()
    logger.info(
        "built-in corpus: %d clips, %.1f min of audio in %.1f s (%s)",
        len(results),
        total / 60.0,
        time.perf_counter() - start,
        out,
    )
    return out


def _relocate(folder: Path, info: dict) -> None:
    """Rewrite the absolute paths of a corpus that was moved from ``info["root"]``."""
    old, new = info["root"].rstrip("/") + "/", str(folder).rstrip("/") + "/"
    for path in sorted((folder / "manifests").rglob("*.csv")):
        text = path.read_text(encoding="utf-8")
        if old in text:
            path.write_text(text.replace(old, new), encoding="utf-8")
    info = dict(info, root=str(folder))
    (folder / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    logger.info("built-in corpus moved from %s: manifest paths updated", old)


def ensure_builtin_corpus(
    folder,
    *,
    minutes: float = DEFAULT_MINUTES,
    seed: int = DEFAULT_SEED,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """The built-in corpus in ``folder``, generated on first use; returns the folder.

    A complete corpus with the same ``minutes``, ``seed`` and corpus version is reused (its
    manifest paths are updated if the folder was moved); an interrupted or different one is
    regenerated. Manifests are in ``folder/manifests/<task>/<split>.csv``.

    Example
    -------
    >>> ensure_builtin_corpus("/dev/null", minutes=1)
    Traceback (most recent call last):
    ...
    FileExistsError: corpus folder /dev/null is a file, not a folder
    """
    _check_settings(minutes, seed, workers)
    folder = Path(folder).expanduser().resolve()
    info = read_marker(folder)
    if (
        info is not None
        and not (folder / IN_PROGRESS).exists()
        and info.get("version") == CORPUS_VERSION
        and info.get("minutes") == minutes
        and info.get("seed") == seed
    ):
        if info.get("root") != str(folder):
            _relocate(folder, info)
        logger.info("reusing the built-in corpus in %s", folder)
        return folder
    return generate_corpus(folder, minutes=minutes, seed=seed, workers=workers, progress=progress)
