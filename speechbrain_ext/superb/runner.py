"""The SUPERB runner: the ten tasks for one or more encoders and the baselines, into one table.

``python -m speechbrain_ext.superb --encoder PATH [PATH ...] --tasks all`` runs every chosen
SUPERB task (:mod:`speechbrain_ext.superb.tasks`) for each encoder, the ``fbank`` baseline and
the ``random`` one (the first encoder's configuration with random weights), on the built-in
corpus by default (``--data_folder TASK=PATH`` for a real corpus), and writes
``SUPERB/results/<name>.md`` and ``.csv``: a row per task (metric, direction, each encoder's
value with the secondary statistic in brackets: CER for ASR, MAP for QbE, slot-value CER for
SF), the SUPERB aggregate score (:mod:`speechbrain_ext.superb.aggregate`) and the learned layer
weights (QbE: the chosen layer as a one-hot). The options are the MP3S runner's
(:mod:`speechbrain_ext.downstream.cli`).

Example
-------
>>> [(task.name, probe) for task, probe in plan_runs(tasks="QbE,SF")]
[('QbE', 'dtw'), ('SF', 'bilstm_ctc')]
"""

from speechbrain_ext.downstream import cli, grid
from speechbrain_ext.superb.aggregate import summarize
from speechbrain_ext.superb.tasks import SUITE, TASKS

TITLE = "SUPERB results"
PROG = "python -m speechbrain_ext.superb"
DESCRIPTION = "Score frozen encoders and their baselines on the ten SUPERB tasks."


def plan_runs(*, tasks: str = "all", probes: str = "default") -> list[tuple]:
    """The (task, probe) pairs of the SUPERB tasks to run (:func:`grid.plan_runs`)."""
    return grid.plan_runs(TASKS, tasks=tasks, probes=probes)


def build_parser():
    """The runner's command line (:func:`speechbrain_ext.downstream.cli.build_parser`)."""
    return cli.build_parser(SUITE, prog=PROG, description=DESCRIPTION)


def main(argv=None) -> int:
    """Run the grid, write the tables with the SUPERB score; returns 1 if any run failed."""
    return cli.main(
        SUITE, argv, prog=PROG, description=DESCRIPTION, title=TITLE, summarize=summarize
    )
