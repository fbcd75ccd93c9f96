"""The grid runner shared by the suites: every task × probe of a plan for an encoder and its
baselines, into one table.

A suite's command line (``python -m speechbrain_ext.mp3s``) plans the runs from its tasks
(:func:`plan_runs`, :func:`plan_languages`, :func:`plan_variants`) and calls :func:`run_grid`:
each run loads the task's probe yaml with an overrides dict
(:func:`~speechbrain_ext.downstream.engine.load_task_hparams`) and calls the engine
(:func:`~speechbrain_ext.downstream.engine.run_task`) in this process or in worker processes;
:func:`write_tables` writes the Markdown table and the CSV. No recipe file is read.

Example
-------
>>> from speechbrain_ext.downstream.task import suite_tasks
>>> plan = plan_runs(suite_tasks("mp3s"), tasks="SLURP,IEMOCAP", probes="default")
>>> [(task.name, probe) for task, probe in plan]
[('SLURP', 'meanpool_linear'), ('IEMOCAP', 'meanpool_linear')]
"""

import csv
import logging
import math
import multiprocessing
import re
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from speechbrain_ext.downstream.baselines import FBANK
from speechbrain_ext.downstream.engine import load_task_hparams, run_task
from speechbrain_ext.downstream.task import get_task

logger = logging.getLogger(__name__)

BASELINES = ("fbank", "random")


@dataclass(frozen=True)
class Variant:
    """One encoder column of the table: a label, the ``encoder`` value and ``pretrained``."""

    label: str
    encoder: str
    pretrained: bool = True


@dataclass
class RunResult:
    """Outcome of one task run."""

    variant: Variant
    task: str
    probe: str
    metric: str
    language: str | None = None  # CommonVoice on the built-in corpus: cy or eu
    value: float | None = None
    secondary: float | None = None  # shown beside the value: the CER of a WER, QbE's MAP...
    secondary_metric: str | None = None  # its name (the task's ``secondary``)
    seconds: float = 0.0
    layer_weights: list = field(default_factory=list)
    error: str | None = None
    higher_is_better: bool = True  # direction of ``metric``

    @property
    def failed(self) -> bool:
        """True unless the run gave a finite score (an error, or no or a non-finite value)."""
        return self.error is not None or self.value is None or not math.isfinite(self.value)

    @property
    def status(self) -> str:
        """``ok``, or ``failed: <reason>`` (the first line of the error)."""
        if not self.failed:
            return "ok"
        reason = self.error or f"no finite score (value {self.value})"
        return "failed: " + reason.splitlines()[0]

    @property
    def row(self) -> str:
        """The task as the table shows it: ``CommonVoice (eu)``, or the task name."""
        return f"{self.task} ({self.language})" if self.language else self.task


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def plan_runs(suite_tasks, *, tasks: str = "all", probes: str = "default") -> list[tuple]:
    """The (task, probe) pairs to run.

    Arguments
    ---------
    suite_tasks : list of Task
        The suite's tasks in its order (:func:`~speechbrain_ext.downstream.task.suite_tasks`).
    tasks : str
        ``"all"`` or comma-separated task names.
    probes : str
        ``"default"`` (each task's first probe), ``"all"`` (every probe a task ships), or
        comma-separated probe names, optionally ``Task:probe`` to restrict one to a task.
    """
    by_name = {task.name: task for task in suite_tasks}
    names = list(by_name) if tasks == "all" else _split(tasks)
    plan = []
    for name in names:
        if name not in by_name:
            raise KeyError(f"unknown task {name!r}; valid names: {', '.join(by_name)}")
        task = by_name[name]
        if probes == "default":
            chosen = [task.probes[0]]
        elif probes == "all":
            chosen = list(task.probes)
        else:
            wanted = []
            for item in _split(probes):
                scope, _, probe = item.rpartition(":")
                if scope in ("", task.name):
                    wanted.append(probe)
            chosen = [p for p in task.probes if p in wanted]
            if not chosen:
                raise ValueError(
                    f"task {task.name} has none of the probes {wanted or _split(probes)}; "
                    f"its probes: {', '.join(task.probes)}"
                )
        plan.extend((task, probe) for probe in chosen)
    return plan


def encoder_labels(encoders) -> list[str]:
    """Column labels of several encoders: their folder names (:func:`default_name`), made
    unique with ``_2``, ``_3``... and never a baseline's name.

    Example
    -------
    >>> encoder_labels(["a/bestrq/1986", "b/bestrq", "c/random", "runs/hubert"])
    ['bestrq', 'bestrq_2', 'random_2', 'hubert']
    """
    labels, taken = [], set(BASELINES)
    for encoder in encoders:
        base = default_name(str(encoder))
        label, number = base, 1
        while label in taken:
            number += 1
            label = f"{base}_{number}"
        taken.add(label)
        labels.append(label)
    return labels


def plan_variants(encoders, baselines: str = "fbank,random") -> list[Variant]:
    """The encoder(s) and the baselines to compare them with (``"none"``: no baseline).

    One encoder (a path) is the column ``encoder``; several (a list) are a column each, labelled
    by :func:`encoder_labels`. Then ``fbank``, then ``random``: the first encoder's
    configuration with random weights. ``fbank`` as an encoder is the baseline itself.

    Example
    -------
    >>> [v.label for v in plan_variants("results/bestrq")]
    ['encoder', 'fbank', 'random']
    >>> [v.label for v in plan_variants(["results/bestrq", "results/hubert"])]
    ['bestrq', 'hubert', 'fbank', 'random']
    >>> [v.label for v in plan_variants("fbank")]
    ['fbank']
    """
    chosen = [] if baselines == "none" else _split(baselines)
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; valid: {', '.join(BASELINES)}, none")
    encoders = [encoders] if isinstance(encoders, str | Path) else list(encoders)
    models = [str(e) for e in dict.fromkeys(str(e) for e in encoders) if e != FBANK]
    if not models:  # the filterbank itself: no weights to randomise
        return [Variant("fbank", FBANK)]
    labels = ["encoder"] if len(models) == 1 else encoder_labels(models)
    variants = [Variant(label, model) for label, model in zip(labels, models)]
    if "fbank" in chosen or FBANK in encoders:
        variants.append(Variant("fbank", FBANK))
    if "random" in chosen:
        variants.append(Variant("random", models[0], pretrained=False))
    return variants


def plan_languages(plan, languages: str = "all", *, data_folders=()) -> list[tuple]:
    """The (task, probe, language) runs of ``plan``: a task with built-in languages runs once per
    chosen language, any other (and one given a real ``data_folders`` corpus) once, with None.

    Example
    -------
    >>> from speechbrain_ext.downstream.task import suite_tasks
    >>> plan = plan_runs(suite_tasks("mp3s"), tasks="CommonVoice,SLURP")
    >>> [(t.name, lang) for t, _, lang in plan_languages(plan)]
    [('CommonVoice', 'cy'), ('CommonVoice', 'eu'), ('SLURP', None)]
    >>> [(t.name, lang) for t, _, lang in plan_languages(plan, "eu")]
    [('CommonVoice', 'eu'), ('SLURP', None)]
    >>> plan_languages(plan, "xx")
    Traceback (most recent call last):
    ...
    ValueError: CommonVoice has none of the languages ['xx']; its languages: cy, eu
    """
    runs = []
    for task, probe in plan:
        if not task.languages or task.name in data_folders:
            runs.append((task, probe, None))
            continue
        chosen = list(task.languages) if languages == "all" else _split(languages)
        kept = [language for language in task.languages if language in chosen]
        if not kept:
            raise ValueError(
                f"{task.name} has none of the languages {chosen}; its languages: "
                + ", ".join(task.languages)
            )
        runs.extend((task, probe, language) for language in kept)
    return runs


def parse_override(item: str) -> tuple[str, str]:
    """``"[Task[/probe]:]key=value"`` → (scope, ``"key=value"``).

    Example
    -------
    >>> parse_override("number_of_epochs=2"), parse_override("SLURP:lr=0.01")
    (('', 'number_of_epochs=2'), ('SLURP', 'lr=0.01'))
    >>> parse_override("epochs")
    Traceback (most recent call last):
    ...
    ValueError: --override wants [TASK[/PROBE]:]KEY=VALUE, got 'epochs'
    """
    key, sep, value = item.partition("=")
    scope, _, key = key.rpartition(":")
    if not sep or not key:
        raise ValueError(f"--override wants [TASK[/PROBE]:]KEY=VALUE, got {item!r}")
    return scope, f"{key}={value}"


def parse_value(value: str):
    """A command-line value typed as yaml types it (SpeechBrain's ``--key=value`` does so).

    Example
    -------
    >>> parse_value("2"), parse_value("0.5"), parse_value("False"), parse_value("[3]")
    (2, 0.5, False, [3])
    >>> parse_value("results/x"), parse_value("null")
    ('results/x', None)
    """
    return yaml.safe_load(value) if value.strip() else value


def run_overrides(
    task,
    probe: str,
    variant: Variant,
    *,
    work_folder: Path,
    data_folders: dict,
    language: str | None = None,
    manifest_root=None,
    builtin_folder=None,
    builtin_minutes=None,
    builtin_seed=None,
    overrides=(),
    configs=None,
) -> dict:
    """The yaml overrides (key → value) of one run: the variant's encoder, the run's folders
    under ``work_folder``, its data, then the user's ``overrides`` (``[Task[/probe]:]key=value``
    items that apply to this task and probe). An unscoped ``key=value`` applies to the runs
    whose yaml has the key (``number_of_epochs`` skips the training-free QbE);
    :func:`check_overrides` makes sure some yaml of the plan has it.

    Example
    -------
    >>> task = get_task("mp3s/SLURP")
    >>> run_overrides(task, "meanpool_linear", Variant("fbank", "fbank"), work_folder=Path("w"),
    ...               data_folders={}, overrides=["lr=0.1", "IEMOCAP:lr=1"])["lr"]
    0.1
    """
    task = get_task(task)
    work_folder = Path(work_folder)
    task_folder = Path(task.name, language) if language else Path(task.name)
    values = {
        "encoder": variant.encoder,
        "pretrained": variant.pretrained,
        "output_folder": str(work_folder / variant.label / task_folder / probe),
        "cache_folder": str(work_folder / "cache"),
        "manifest_folder": str(work_folder / "manifests" / task_folder),
    }
    if language:
        values["language"] = language
    if task.name in data_folders:
        values["data_folder"] = str(data_folders[task.name])
    elif manifest_root is not None:
        values["manifest_root"] = str(manifest_root)
    elif builtin_folder is not None:
        values["builtin_folder"] = str(builtin_folder)
        if builtin_minutes is not None:
            values["builtin_minutes"] = builtin_minutes
        if builtin_seed is not None:
            values["builtin_seed"] = builtin_seed
    keys = yaml_keys(task, probe, configs=configs)
    for item in overrides:
        scope, assignment = parse_override(item)
        if scope in ("", task.name, f"{task.name}/{probe}"):
            key, _, value = assignment.partition("=")
            if scope or key in keys:
                values[key] = parse_value(value)
    return values


def yaml_keys(task, probe: str, *, configs=None) -> set[str]:
    """The top-level keys of a task's probe yaml (of its base, for a variant).

    Example
    -------
    >>> {"lr", "number_of_epochs"} <= yaml_keys("mp3s/SLURP", "meanpool_linear")
    True
    """
    from speechbrain_ext.downstream.engine import task_config
    from speechbrain_ext.hparams import resolve_variant

    try:
        base = resolve_variant(task_config(task, probe, configs=configs))[0]
    except (OSError, ValueError):  # no such yaml: loading it will say so, for that run alone
        return set()
    return set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", base.read_text(), re.M))


def check_overrides(plan, overrides, *, configs=None) -> None:
    """``ValueError`` for an unscoped override (``key=value``) that no yaml of ``plan`` (its
    (task, probe, ...) runs) has: a misspelt key must not be silently ignored everywhere.

    Example
    -------
    >>> plan = plan_runs([get_task("mp3s/SLURP")])
    >>> check_overrides(plan, ["lr=0.1"])
    >>> check_overrides(plan, ["lr_shedule=linear"])
    Traceback (most recent call last):
    ...
    ValueError: --override lr_shedule=linear: no task's yaml has the key 'lr_shedule'
    """
    if not overrides:
        return
    keys = set()
    for task, probe, *_ in plan:
        keys |= yaml_keys(task, probe, configs=configs)
    for item in overrides:
        scope, assignment = parse_override(item)
        key = assignment.partition("=")[0]
        if not scope and key not in keys:
            raise ValueError(f"--override {item}: no task's yaml has the key {key!r}")


def check_outcome(outcome: dict, secondary: str | None = "CER") -> tuple:
    """(value, the ``secondary`` test statistic or None, layer weights) of a task's result;
    ``ValueError`` unless all are finite numbers, so that a diverged probe or a broken encoder
    is a failed run, never a score.

    Example
    -------
    >>> check_outcome({"value": 71.5, "layer_weights": [0.25, 0.75]})
    (71.5, None, [0.25, 0.75])
    >>> check_outcome({"value": float("nan"), "layer_weights": [0.5, 0.5]})
    Traceback (most recent call last):
    ...
    ValueError: the task's metric is not a finite number: nan
    """
    value = float(outcome["value"])
    if not math.isfinite(value):
        raise ValueError(f"the task's metric is not a finite number: {value}")
    other = None
    if secondary is not None and secondary in outcome.get("test_stats", {}):
        other = float(outcome["test_stats"][secondary])
        if not math.isfinite(other):
            raise ValueError(f"the task's {secondary} is not a finite number: {other}")
    weights = [float(w) for w in outcome["layer_weights"]]
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"the learned layer weights are not finite: {weights}")
    return value, other, weights


def run_one(
    task, probe: str, variant: Variant, language=None, *, device: str = "cpu", configs=None,
    **run_options,
) -> RunResult:  # fmt: skip
    """Run one task through the engine in this process (``run_options``: those of
    :func:`run_overrides`; ``configs``: another folder of probe yamls); a failure is recorded in
    the result, not raised.
    """
    task = get_task(task)
    result = RunResult(
        variant=variant, task=task.name, probe=probe, metric=task.metric,
        higher_is_better=task.higher_is_better, language=language,
    )  # fmt: skip
    start = time.perf_counter()
    try:
        overrides = run_overrides(
            task, probe, variant, language=language, configs=configs, **run_options
        )
        logger.info("%s run: %s / %s / %s", task.suite, variant.label, result.row, probe)
        hparams = load_task_hparams(task, probe, overrides, configs=configs)
        outcome = run_task(task, hparams, {"device": device, "noprogressbar": True})
        value, other, weights = check_outcome(outcome, task.secondary)
        result.value, result.secondary, result.layer_weights = value, other, weights
        result.secondary_metric = task.secondary if other is not None else None
    except Exception as error:  # one failed run must not lose the others
        result.value, result.secondary, result.layer_weights = None, None, []
        result.error = f"{type(error).__name__}: {error}"
        logger.error("%s run failed: %s\n%s", task.suite, result.error, traceback.format_exc())
    result.seconds = time.perf_counter() - start
    return result


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")


def run_grid(
    plan, variants, *, jobs: int = 1, threads: int | None = None, **run_options
) -> list[RunResult]:
    """Run every (task, probe, language) of ``plan`` (:func:`plan_languages`; tasks of any
    suite) for every variant (``run_options``: those of :func:`run_one`).

    With ``jobs > 1`` the runs go to that many worker processes (``threads`` torch threads
    each), the first tasks of ``plan`` first (the MP3S plan starts with the longest,
    LibriSpeech). Results come back in variant-major order whatever the order of completion.
    """
    runs = [
        (task.key, probe, variant, language)
        for task, probe, language in plan
        for variant in variants
    ]
    if jobs <= 1:
        done = [run_one(*run, **run_options) for run in runs]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=_init_worker,
            initargs=(threads or 1,),
        ) as pool:  # fmt: skip
            futures = [pool.submit(run_one, *run, **run_options) for run in runs]
            done = [future.result() for future in futures]
    order = {variant: index for index, variant in enumerate(variants)}
    return sorted(done, key=lambda r: order[r.variant])  # stable: plan order within a variant


DECIMALS = {"MTWV": 4, "MAP": 4}  # metrics in [0, 1]; the others are percentages


def _fmt(value: float | None, metric: str | None = None) -> str:
    return "failed" if value is None else f"{value:.{DECIMALS.get(metric, 2)}f}"


@dataclass
class SummaryRow:
    """A row under the task rows (a suite's aggregate score): a value per encoder label."""

    name: str
    metric: str
    values: dict  # encoder label → float or None (shown as n/a)
    higher_is_better: bool = True


def format_markdown(
    results, *, command: str, name: str, notes: str = "", title: str = "Downstream results",
    summary=(), summary_notes: str = "",
) -> str:  # fmt: skip
    """The results table (metric per task and probe, one column per encoder; a task's
    secondary statistic in brackets after its metric: the CER after a WER), then the
    ``summary`` rows (:class:`SummaryRow`) and ``summary_notes``, and the layer weights, as
    Markdown.
    """
    labels = list(dict.fromkeys(r.variant.label for r in results))
    rows = list(dict.fromkeys((r.row, r.probe) for r in results))
    by_key = {(r.variant.label, r.row, r.probe): r for r in results}
    lines = [
        f"# {title}: {name}",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    if notes:
        lines += [notes, ""]
    lines += [
        "| task | probe | metric | " + " | ".join(labels) + " |",
        "|---|---|---|" + "---|" * len(labels),
    ]
    for row, probe in rows:
        cells = [by_key.get((label, row, probe)) for label in labels]
        definition = next(c for c in cells if c is not None)  # metric and its direction
        values = [c.value for c in cells if c is not None and not c.failed]
        best = (max if definition.higher_is_better else min)(values) if values else None
        arrow = "↑" if definition.higher_is_better else "↓"
        metric = f"{definition.metric} {arrow}"
        secondary = next((c.secondary_metric for c in cells if c and c.secondary_metric), None)
        if secondary:
            metric += f" ({secondary})"
        text = []
        for cell in cells:
            if cell is None:
                text.append("-")
                continue
            if cell.failed:  # never a number, never bold: the reason is in the Runs table
                text.append("failed")
                continue
            shown = _fmt(cell.value, cell.metric)
            shown = f"**{shown}**" if cell.value == best else shown
            if cell.secondary is not None:
                shown += f" ({_fmt(cell.secondary, cell.secondary_metric)})"
            text.append(shown)
        lines.append(f"| {row} | {probe} | {metric} | " + " | ".join(text) + " |")
    for extra in summary:
        arrow = "↑" if extra.higher_is_better else "↓"
        text = [
            "n/a" if extra.values.get(label) is None else f"{extra.values[label]:.1f}"
            for label in labels
        ]
        lines.append(f"| **{extra.name}** | | {extra.metric} {arrow} | " + " | ".join(text) + " |")
    if summary_notes:
        lines += ["", summary_notes]
    weighted = [r for r in results if len(r.layer_weights) > 1 and not r.failed]
    if weighted:
        width = max(len(r.layer_weights) for r in weighted)
        lines += [
            "",
            "## Learned layer weights",
            "",
            "Softmax-normalised; layer 0 is the front end's output.",
            "",
            "| encoder | task | probe | " + " | ".join(f"L{i}" for i in range(width)) + " |",
            "|---|---|---|" + "---|" * width,
        ]
        for r in weighted:
            cells = [f"{w:.3f}" for w in r.layer_weights] + [""] * (width - len(r.layer_weights))
            lines.append(f"| {r.variant.label} | {r.row} | {r.probe} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Runs",
        "",
        "| encoder | task | probe | seconds | status |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        status = r.status.replace("|", "/")[:140]
        lines.append(f"| {r.variant.label} | {r.row} | {r.probe} | {r.seconds:.0f} | {status} |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "encoder", "encoder_path", "pretrained", "task", "language", "probe", "metric", "value",
    "secondary_metric", "secondary", "seconds",
    "layer_weights", "status", "error",
)  # fmt: skip
"""``status`` is ``ok`` or ``failed: <reason>``; a failed run has an empty ``value`` and
``layer_weights`` and its full ``error``. A summary row (:class:`SummaryRow`) has its name as
``task``, an empty ``probe``, and ``status`` ``summary``."""


def write_tables(
    results, folder, *, name: str, command: str, notes: str = "", title: str = "Downstream results",
    summary=(), summary_notes: str = "",
) -> tuple:  # fmt: skip
    """Write ``<folder>/<name>.md`` and ``<folder>/<name>.csv`` (with the ``summary`` rows,
    :class:`SummaryRow`, after the runs); returns both paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = folder / f"{name}.md", folder / f"{name}.csv"
    md_path.write_text(
        format_markdown(
            results, command=command, name=name, notes=notes, title=title, summary=summary,
            summary_notes=summary_notes,
        )
    )  # fmt: skip
    variants = {r.variant.label: r.variant for r in results}
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow([
                r.variant.label, r.variant.encoder, r.variant.pretrained, r.task,
                r.language or "", r.probe,
                r.metric, "" if r.failed else f"{r.value:.4f}",
                r.secondary_metric or "", "" if r.secondary is None else f"{r.secondary:.4f}",
                f"{r.seconds:.1f}",
                "" if r.failed else " ".join(f"{w:.4f}" for w in r.layer_weights),
                r.status, (r.error or "no finite score") if r.failed else "",
            ])  # fmt: skip
        for extra in summary:
            for label, variant in variants.items():
                value = extra.values.get(label)
                writer.writerow([
                    label, variant.encoder, variant.pretrained, extra.name, "", "",
                    extra.metric, "" if value is None else f"{value:.4f}", "", "", "", "",
                    "summary", "",
                ])  # fmt: skip
    return md_path, csv_path


def default_name(encoder: str) -> str:
    """A table name from the encoder path (``.../results/bestrq_small/1234`` → ``bestrq_small``).

    Example
    -------
    >>> default_name("recipes/BEST-RQ/results/bestrq_small/1986/")
    'bestrq_small'
    >>> default_name("fbank")
    'fbank'
    """
    parts = [p for p in Path(encoder).parts if p not in ("/", ".")]
    while len(parts) > 1 and (parts[-1].isdigit() or parts[-1].startswith("CKPT")):
        parts.pop()
    return parts[-1] if parts else "encoder"


def check_encoder(spec: str) -> None:
    """Raise unless ``spec`` (``--encoder``) is ``fbank`` or loads as a trained encoder whose
    weights and features (one second of noise) are finite; the message names the path.

    Example
    -------
    >>> check_encoder("fbank")
    >>> check_encoder("no/such/model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: --encoder no/such/model: no such file or folder: no/such/model
    """
    if str(spec) == FBANK:
        return
    from speechbrain_ext.downstream.baselines import load_mp3s_encoder
    from speechbrain_ext.downstream.featurizer import SSLFeaturizer

    try:
        encoder = load_mp3s_encoder(spec, pretrained=True)
        noise = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
        SSLFeaturizer(encoder=encoder).encode_layers(noise, torch.ones(1))
    except (OSError, ValueError) as error:
        raise type(error)(f"--encoder {spec}: {error}") from error
