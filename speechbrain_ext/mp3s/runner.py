"""The MP3S runner: every task × probe for an encoder and its baselines, into one table.

``python -m speechbrain_ext.mp3s --encoder PATH --tasks all`` runs, for the encoder and each
baseline (``fbank``: filterbanks, no encoder; ``random``: the encoder's configuration with
random weights), every chosen MP3S task and probe through the downstream engine
(:func:`speechbrain_ext.downstream.run_task` on the task's probe yaml, package data;
CommonVoice in each language of ``--languages``, Welsh and Basque by default, as in the study),
and writes ``<results_folder>/<name>.md`` and ``.csv``: the metric per task and probe for every
encoder, and the learned layer weights. The exact command heads the Markdown file. Layer
features are cached per encoder (by checksum) in ``<work_folder>/cache``, so a rerun only trains
probes. The command line and the grid are the engine's (:mod:`speechbrain_ext.downstream.cli`,
:mod:`speechbrain_ext.downstream.grid`), shared with the other suites; ``--encoder A B`` puts
several encoders in one table.

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

from speechbrain_ext.downstream import cli, grid
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
from speechbrain_ext.mp3s.tasks import SUITE, TASKS

TITLE = "MP3S results"
PROG = "python -m speechbrain_ext.mp3s"
DESCRIPTION = "Score frozen encoders and their baselines on the MP3S tasks."


def plan_runs(*, tasks: str = "all", probes: str = "default") -> list[tuple]:
    """The (task, probe) pairs of the MP3S tasks to run (:func:`grid.plan_runs`)."""
    return grid.plan_runs(TASKS, tasks=tasks, probes=probes)


def build_parser():
    """The runner's command line (:func:`speechbrain_ext.downstream.cli.build_parser`)."""
    return cli.build_parser(SUITE, prog=PROG, description=DESCRIPTION)


def main(argv=None) -> int:
    """Run the grid and write the tables; returns 1 if any run failed."""
    return cli.main(SUITE, argv, prog=PROG, description=DESCRIPTION, title=TITLE)
