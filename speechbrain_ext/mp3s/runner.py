"""The MP3S runner: every task × probe for an encoder and its baselines, into one table.

``python -m speechbrain_ext.mp3s --encoder PATH --tasks all`` runs, for the encoder and each
baseline (``fbank``: filterbanks, no encoder; ``random``: the encoder's configuration with
random weights), every chosen MP3S task and probe through the downstream engine
(:func:`speechbrain_ext.downstream.run_task` on the task's probe yaml, package data;
CommonVoice in each language of ``--languages``, Welsh and Basque by default, as in the study),
and writes ``<results_folder>/<name>.md`` and ``.csv``: the metric per task and probe for every
encoder, and the learned layer weights. The exact command heads the Markdown file. Layer
features are cached per encoder (by checksum) in ``<work_folder>/cache``, so a rerun only trains
probes. The grid itself is :mod:`speechbrain_ext.downstream.grid`, shared with other suites.

Example
-------
>>> plan = plan_runs(tasks="SLURP,IEMOCAP", probes="default")
>>> [(task.name, probe) for task, probe in plan]
[('SLURP', 'meanpool_linear'), ('IEMOCAP', 'meanpool_linear')]
>>> plan_runs(tasks="SLURP", probes="ctc_linear")
Traceback (most recent call last):
...
ValueError: task SLURP has none of the probes ['ctc_linear']; its probes: meanpool_linear, ...
"""

import argparse
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from speechbrain_ext.downstream import grid
from speechbrain_ext.downstream.grid import (  # noqa: F401 (the runner's public names)
    BASELINES,
    RunResult,
    Variant,
    check_encoder,
    check_outcome,
    default_name,
    format_markdown,
    parse_override,
    plan_languages,
    plan_variants,
    run_grid,
    run_one,
    write_tables,
)
from speechbrain_ext.mp3s.tasks import TASKS, get_task, list_tasks

TITLE = "MP3S results"


def plan_runs(*, tasks: str = "all", probes: str = "default") -> list[tuple]:
    """The (task, probe) pairs of the MP3S tasks to run (:func:`grid.plan_runs`)."""
    return grid.plan_runs(TASKS, tasks=tasks, probes=probes)


def _parse_data_folders(items) -> dict:
    folders = {}
    for item in items or ():
        task, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--data_folder wants TASK=PATH, got {item!r}")
        get_task(task)  # KeyError naming the valid tasks
        folders[task] = path
    return folders


def build_parser() -> argparse.ArgumentParser:
    """The runner's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.mp3s",
        description="Score a frozen encoder and its baselines on the MP3S tasks.",
    )
    parser.add_argument("--encoder", required=True, help="trained SSL model folder, or fbank")
    parser.add_argument("--tasks", default="all", help=f"all or some of {','.join(list_tasks())}")
    parser.add_argument(
        "--probes", default="default", help="default (first per task), all, or names / Task:name"
    )
    parser.add_argument(
        "--baselines", default="fbank,random", help="comma-separated: fbank, random; or none"
    )
    parser.add_argument(
        "--languages", default="all",
        help="CommonVoice languages of the built-in corpus: all (cy,eu) or some of them",
    )  # fmt: skip
    parser.add_argument("--name", default=None, help="table name (default: the encoder's name)")
    parser.add_argument(
        "--data_folder", action="append", metavar="TASK=PATH", help="real corpus of a task"
    )
    parser.add_argument("--manifest_root", default=None, help="ready manifests (built-in layout)")
    parser.add_argument("--builtin_folder", default="data/builtin", help="built-in corpus folder")
    parser.add_argument("--builtin_minutes", type=float, default=None, help="its size (def. 60)")
    parser.add_argument("--builtin_seed", type=int, default=None, help="its seed (default 0)")
    parser.add_argument(
        "--configs", default=None,
        help="other probe yamls: <configs>/<task>/<probe>.yaml (default: the package's)",
    )  # fmt: skip
    parser.add_argument("--work_folder", default=None, help="default results/MP3S/<name>")
    parser.add_argument("--results_folder", default="MP3S/results", help="default MP3S/results")
    parser.add_argument(
        "--override", action="append", default=[], metavar="[TASK[/PROBE]:]KEY=VALUE",
        help="yaml override for every run (or one task's), e.g. number_of_epochs=2",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1),
        help="recipe runs in parallel worker processes (default: min(2, CPUs))",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads per run (default 1: the small probes gain nothing from more)",
    )  # fmt: skip
    return parser


def main(argv=None) -> int:
    """Run the grid and write the tables; returns 1 if any run failed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    torch.set_num_threads(args.threads)
    data_folders = _parse_data_folders(args.data_folder)
    plan = plan_runs(tasks=args.tasks, probes=args.probes)
    plan = plan_languages(plan, args.languages, data_folders=data_folders)
    variants = plan_variants(args.encoder, args.baselines)
    try:  # before any baseline runs: a bad --encoder must not cost a grid of fbank runs
        check_encoder(args.encoder)
    except (OSError, ValueError) as error:
        build_parser().error(str(error))
    name = args.name or default_name(args.encoder)
    work_folder = Path(args.work_folder or Path("results") / "MP3S" / name)
    results_folder = Path(args.results_folder)
    start = time.perf_counter()
    if args.manifest_root is None and any(task.name not in data_folders for task, *_ in plan):
        # Generate the built-in corpus once, here, rather than in parallel runs.
        from speechbrain_ext.corpus import DEFAULT_MINUTES, DEFAULT_SEED, ensure_builtin_corpus

        ensure_builtin_corpus(
            args.builtin_folder,
            minutes=DEFAULT_MINUTES if args.builtin_minutes is None else args.builtin_minutes,
            seed=DEFAULT_SEED if args.builtin_seed is None else args.builtin_seed,
        )
    results = run_grid(
        plan,
        variants,
        configs=args.configs,
        work_folder=work_folder,
        data_folders=data_folders,
        manifest_root=args.manifest_root,
        builtin_folder=args.builtin_folder,
        builtin_minutes=args.builtin_minutes,
        builtin_seed=args.builtin_seed,
        overrides=args.override,
        device=args.device,
        jobs=args.jobs,
        threads=args.threads,
    )
    elapsed = time.perf_counter() - start
    data = "real corpora: " + ", ".join(data_folders) if data_folders else "built-in corpus"
    if args.manifest_root:
        data = f"manifests in {args.manifest_root}"
    notes = (
        f"Data: {data}. Machine: {platform.machine()} {platform.processor() or ''}".strip()
        + f", device {args.device}, {args.jobs} parallel run(s) of {args.threads} torch "
        + "thread(s); "
        + f"total {elapsed / 60:.1f} min. Date: {time.strftime('%Y-%m-%d')}."
    )
    command = "python -m speechbrain_ext.mp3s " + shlex.join(argv)
    md_path, csv_path = write_tables(
        results, results_folder, name=name, command=command, notes=notes, title=TITLE
    )
    print(md_path.read_text())
    print(f"wrote {md_path} and {csv_path}")
    return int(any(r.error for r in results))
