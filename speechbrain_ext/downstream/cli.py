"""The command line every suite shares: its tasks × probes for encoders and baselines, one table.

``python -m speechbrain_ext.<suite> --encoder PATH [PATH ...] --tasks all`` runs, for every
encoder and each baseline (``fbank``: filterbanks, no encoder; ``random``: the first encoder's
configuration with random weights), every chosen task and probe of the suite through the
downstream engine (:func:`~speechbrain_ext.downstream.engine.run_task` on the task's probe
yaml, package data; a task with built-in languages once per language of ``--languages``), and
writes ``<results_folder>/<name>.md`` and ``.csv``: the metric per task and probe for every
encoder, a suite's summary rows (``summarize``: SUPERB's aggregate score), and the learned layer
weights. The exact command heads the Markdown file. Layer features are cached per encoder (by
checksum) in ``<work_folder>/cache``, so a rerun only trains probes. A suite's ``runner`` is
:func:`build_parser` and :func:`main` with its name (``speechbrain_ext.mp3s.runner``,
``speechbrain_ext.superb.runner``).

Example
-------
>>> parser = build_parser("mp3s", prog="python -m speechbrain_ext.mp3s", description="MP3S")
>>> args = parser.parse_args(["--encoder", "a", "b", "--encoder", "c"])
>>> args.encoder, args.results_folder, args.tasks
(['a', 'b', 'c'], 'MP3S/results', 'all')
>>> parse_data_folders("mp3s", ["SLURP=/data/slurp"])
{'SLURP': '/data/slurp'}
"""

import argparse
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from speechbrain_ext.downstream import grid
from speechbrain_ext.downstream.task import get_task, suite_tasks


def folder_name(suite: str) -> str:
    """The suite's folder and results name: ``MP3S``, ``SUPERB``."""
    return suite.upper()


def parse_data_folders(suite: str, items) -> dict:
    """``TASK=PATH`` items of ``--data_folder`` as task → path (``KeyError`` for a task the
    suite lacks, naming the valid ones).
    """
    folders = {}
    for item in items or ():
        task, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--data_folder wants TASK=PATH, got {item!r}")
        get_task(task, suite=suite)  # KeyError naming the valid tasks
        folders[task] = path
    return folders


def build_parser(suite: str, *, prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of ``suite``'s runner."""
    tasks = suite_tasks(suite)
    folder = folder_name(suite)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--encoder", required=True, nargs="+", action="extend",
        help="trained SSL model folder(s) (each a column, in order), or fbank",
    )  # fmt: skip
    names = ",".join(task.name for task in tasks)
    parser.add_argument("--tasks", default="all", help=f"all or some of {names}")
    parser.add_argument(
        "--probes", default="default", help="default (first per task), all, or names / Task:name"
    )
    parser.add_argument(
        "--baselines", default="fbank,random", help="comma-separated: fbank, random; or none"
    )
    with_languages = [task for task in tasks if task.languages]
    if with_languages:
        described = "; ".join(f"{task.name}: {','.join(task.languages)}" for task in with_languages)
        parser.add_argument(
            "--languages", default="all",
            help=f"languages of the built-in corpus: all ({described}) or some of them",
        )  # fmt: skip
    parser.add_argument("--name", default=None, help="table name (default: the encoders' names)")
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
    parser.add_argument("--work_folder", default=None, help=f"default results/{folder}/<name>")
    parser.add_argument(
        "--results_folder", default=f"{folder}/results", help=f"default {folder}/results"
    )
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


def table_name(encoders) -> str:
    """The default table name: the encoders' folder names joined by ``+``.

    Example
    -------
    >>> table_name(["results/bestrq_small/1986"]), table_name(["a/bestrq", "b/hubert"])
    ('bestrq_small', 'bestrq+hubert')
    """
    return "+".join(dict.fromkeys(grid.default_name(str(e)) for e in encoders))


def main(
    suite: str,
    argv=None,
    *,
    prog: str,
    description: str,
    title: str,
    summarize: Callable | None = None,
) -> int:
    """Run ``suite``'s grid and write the tables; returns 1 if any run failed.

    Arguments
    ---------
    suite : str
        The suite (``"mp3s"``, ``"superb"``).
    argv : list of str, optional
        The command line (default ``sys.argv[1:]``).
    prog, description : str
        The parser's (:func:`build_parser`).
    title : str
        The Markdown table's title.
    summarize : callable, optional
        ``summarize(results) -> (summary rows, notes)``: rows under the task rows
        (:class:`~speechbrain_ext.downstream.grid.SummaryRow`) and a Markdown paragraph.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(suite, prog=prog, description=description)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    torch.set_num_threads(args.threads)
    data_folders = parse_data_folders(suite, args.data_folder)
    plan = grid.plan_runs(suite_tasks(suite), tasks=args.tasks, probes=args.probes)
    plan = grid.plan_languages(plan, getattr(args, "languages", "all"), data_folders=data_folders)
    try:
        grid.check_overrides(plan, args.override, configs=args.configs)
    except ValueError as error:
        parser.error(str(error))
    encoders = args.encoder
    variants = grid.plan_variants(encoders[0] if len(encoders) == 1 else encoders, args.baselines)
    try:  # before any baseline runs: a bad --encoder must not cost a grid of fbank runs
        for encoder in encoders:
            grid.check_encoder(encoder)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    name = args.name or table_name(encoders)
    work_folder = Path(args.work_folder or Path("results") / folder_name(suite) / name)
    start = time.perf_counter()
    if args.manifest_root is None and any(task.name not in data_folders for task, *_ in plan):
        # Generate the built-in corpus once, here, rather than in parallel runs.
        from speechbrain_ext.corpus import DEFAULT_MINUTES, DEFAULT_SEED, ensure_builtin_corpus

        ensure_builtin_corpus(
            args.builtin_folder,
            minutes=DEFAULT_MINUTES if args.builtin_minutes is None else args.builtin_minutes,
            seed=DEFAULT_SEED if args.builtin_seed is None else args.builtin_seed,
        )
    results = grid.run_grid(
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
    summary, summary_notes = summarize(results) if summarize else ((), "")
    md_path, csv_path = grid.write_tables(
        results, args.results_folder, name=name, command=f"{prog} {shlex.join(argv)}",
        notes=notes, title=title, summary=summary, summary_notes=summary_notes,
    )  # fmt: skip
    print(md_path.read_text())
    print(f"wrote {md_path} and {csv_path}")
    return int(any(r.error for r in results))
