"""The MP3S runner: every task × probe for an encoder and its baselines, into one table.

``python -m speechbrain_ext.mp3s --encoder PATH --tasks all`` runs, for the encoder and each
baseline (``fbank``: filterbanks, no encoder; ``random``: the encoder's configuration with
random weights), the recipe ``MP3S/<task>/train.py`` with ``hparams/<probe>.yaml`` of every
chosen task and probe (CommonVoice in each language of ``--languages``, Welsh and Basque by
default, as in the study), in this process, and writes ``<results_folder>/<name>.md`` and ``.csv``:
the metric per task and probe for every encoder, and the learned layer weights. The exact
command heads the Markdown file. Layer features are cached per encoder (by checksum) in
``<work_folder>/cache``, so a rerun only trains probes.

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
import csv
import importlib.util
import logging
import math
import multiprocessing
import os
import platform
import shlex
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from speechbrain_ext.mp3s.baselines import FBANK
from speechbrain_ext.mp3s.tasks import get_task, list_tasks

logger = logging.getLogger(__name__)

BASELINES = ("fbank", "random")
REPO_MP3S = Path(__file__).resolve().parents[2] / "MP3S"


@dataclass(frozen=True)
class Variant:
    """One encoder column of the table: a label, the ``encoder`` value and ``pretrained``."""

    label: str
    encoder: str
    pretrained: bool = True


@dataclass
class RunResult:
    """Outcome of one recipe run."""

    variant: Variant
    task: str
    probe: str
    metric: str
    language: str | None = None  # CommonVoice on the built-in corpus: cy or eu
    value: float | None = None
    cer: float | None = None  # CTC tasks: the test character error rate, shown beside the WER
    seconds: float = 0.0
    layer_weights: list = field(default_factory=list)
    error: str | None = None

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


def plan_runs(*, tasks: str = "all", probes: str = "default") -> list[tuple]:
    """The (task, probe) pairs to run.

    Arguments
    ---------
    tasks : str
        ``"all"`` or comma-separated task names.
    probes : str
        ``"default"`` (each task's first probe), ``"all"`` (every probe a recipe ships), or
        comma-separated probe names, optionally ``Task:probe`` to restrict one to a task.
    """
    names = list_tasks() if tasks == "all" else _split(tasks)
    plan = []
    for name in names:
        task = get_task(name)
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


def plan_variants(encoder: str, baselines: str = "fbank,random") -> list[Variant]:
    """The encoder and the baselines to compare it with (``"none"``: no baseline).

    Example
    -------
    >>> [v.label for v in plan_variants("results/bestrq")]
    ['encoder', 'fbank', 'random']
    >>> [v.label for v in plan_variants("fbank")]
    ['fbank']
    """
    chosen = [] if baselines == "none" else _split(baselines)
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; valid: {', '.join(BASELINES)}, none")
    if encoder == FBANK:  # the filterbank itself: no weights to randomise
        return [Variant("fbank", FBANK)]
    variants = [Variant("encoder", str(encoder))]
    if "fbank" in chosen:
        variants.append(Variant("fbank", FBANK))
    if "random" in chosen:
        variants.append(Variant("random", str(encoder), pretrained=False))
    return variants


def plan_languages(plan, languages: str = "all", *, data_folders=()) -> list[tuple]:
    """The (task, probe, language) runs of ``plan``: a task with built-in languages runs once per
    chosen language, any other (and one given a real ``data_folders`` corpus) once, with None.

    Example
    -------
    >>> plan = plan_runs(tasks="CommonVoice,SLURP")
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


def load_recipe_main(recipes: Path, task: str):
    """The ``main(argv)`` function of ``<recipes>/<task>/train.py``."""
    path = Path(recipes) / task / "train.py"
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    module_name = f"mp3s_recipe_{task.lower()}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module.main


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


def recipe_argv(
    *,
    recipes: Path,
    task: str,
    probe: str,
    variant: Variant,
    work_folder: Path,
    data_folders: dict,
    language: str | None = None,
    manifest_root=None,
    builtin_folder=None,
    builtin_minutes=None,
    builtin_seed=None,
    overrides=(),
    device: str = "cpu",
) -> list[str]:
    """Command-line arguments of one recipe run."""
    task_folder = Path(task, language) if language else Path(task)
    argv = [
        str(Path(recipes) / task / "hparams" / f"{probe}.yaml"),
        f"--encoder={variant.encoder}",
        f"--pretrained={variant.pretrained}",
        f"--output_folder={work_folder / variant.label / task_folder / probe}",
        f"--cache_folder={work_folder / 'cache'}",
        f"--manifest_folder={work_folder / 'manifests' / task_folder}",
        f"--device={device}",
        "--noprogressbar",
    ]
    if language:
        argv.append(f"--language={language}")
    if task in data_folders:
        argv.append(f"--data_folder={data_folders[task]}")
    elif manifest_root is not None:
        argv.append(f"--manifest_root={manifest_root}")
    elif builtin_folder is not None:
        argv.append(f"--builtin_folder={builtin_folder}")
        if builtin_minutes is not None:
            argv.append(f"--builtin_minutes={builtin_minutes}")
        if builtin_seed is not None:
            argv.append(f"--builtin_seed={builtin_seed}")
    for item in overrides:
        scope, assignment = parse_override(item)
        if scope in ("", task, f"{task}/{probe}"):
            argv.append(f"--{assignment}")
    return argv


_RECIPE_MAINS: dict = {}


def check_outcome(outcome: dict) -> tuple:
    """(value, cer or None, layer weights) of a recipe's result; ``ValueError`` unless all are
    finite numbers, so that a diverged probe or a broken encoder is a failed run, never a score.

    Example
    -------
    >>> check_outcome({"value": 71.5, "layer_weights": [0.25, 0.75]})
    (71.5, None, [0.25, 0.75])
    >>> check_outcome({"value": float("nan"), "layer_weights": [0.5, 0.5]})
    Traceback (most recent call last):
    ...
    ValueError: the recipe's metric is not a finite number: nan
    """
    value = float(outcome["value"])
    if not math.isfinite(value):
        raise ValueError(f"the recipe's metric is not a finite number: {value}")
    cer = None
    if "CER" in outcome.get("test_stats", {}):
        cer = float(outcome["test_stats"]["CER"])
        if not math.isfinite(cer):
            raise ValueError(f"the recipe's CER is not a finite number: {cer}")
    weights = [float(w) for w in outcome["layer_weights"]]
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"the learned layer weights are not finite: {weights}")
    return value, cer, weights


def run_one(
    task_name: str, probe: str, variant: Variant, language=None, *, recipes, **argv_options
) -> RunResult:
    """Run one recipe in this process; a failure is recorded in the result, not raised."""
    task = get_task(task_name)
    result = RunResult(
        variant=variant, task=task.name, probe=probe, metric=task.metric, language=language
    )
    start = time.perf_counter()
    try:
        key = (str(recipes), task.name)
        if key not in _RECIPE_MAINS:
            _RECIPE_MAINS[key] = load_recipe_main(recipes, task.name)
        argv = recipe_argv(
            recipes=recipes,
            task=task.name,
            probe=probe,
            variant=variant,
            language=language,
            **argv_options,
        )
        logger.info("MP3S run: %s / %s / %s", variant.label, result.row, probe)
        outcome = _RECIPE_MAINS[key](argv)
        value, cer, weights = check_outcome(outcome)
        result.value, result.cer, result.layer_weights = value, cer, weights
    except Exception as error:  # one failed run must not lose the others
        result.value, result.cer, result.layer_weights = None, None, []
        result.error = f"{type(error).__name__}: {error}"
        logger.error("MP3S run failed: %s\n%s", result.error, traceback.format_exc())
    result.seconds = time.perf_counter() - start
    return result


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")


def run_grid(
    plan, variants, *, recipes: Path, jobs: int = 1, threads: int | None = None, **argv_options
) -> list[RunResult]:
    """Run every (task, probe, language) of ``plan`` (:func:`plan_languages`) for every variant.

    With ``jobs > 1`` the runs go to that many worker processes (``threads`` torch threads
    each), the first tasks of ``plan`` first (the runner's plan starts with the longest,
    LibriSpeech). Results come back in variant-major order whatever the order of completion.
    """
    runs = [
        (task.name, probe, variant, language)
        for task, probe, language in plan
        for variant in variants
    ]
    if jobs <= 1:
        done = [run_one(*run, recipes=recipes, **argv_options) for run in runs]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=_init_worker,
            initargs=(threads or 1,),
        ) as pool:  # fmt: skip
            futures = [pool.submit(run_one, *run, recipes=recipes, **argv_options) for run in runs]
            done = [future.result() for future in futures]
    order = {variant: index for index, variant in enumerate(variants)}
    return sorted(done, key=lambda r: order[r.variant])  # stable: plan order within a variant


def _fmt(value: float | None) -> str:
    return "failed" if value is None else f"{value:.2f}"


def format_markdown(results, *, command: str, name: str, notes: str = "") -> str:
    """The results table (metric per task and probe, one column per encoder; CTC tasks show
    the CER in brackets after the WER) and the layer weights, as Markdown.
    """
    labels = list(dict.fromkeys(r.variant.label for r in results))
    rows = list(dict.fromkeys((r.task, r.row, r.probe) for r in results))
    by_key = {(r.variant.label, r.row, r.probe): r for r in results}
    lines = [
        f"# MP3S results: {name}",
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
    for task, row, probe in rows:
        definition = get_task(task)
        cells = [by_key.get((label, row, probe)) for label in labels]
        values = [c.value for c in cells if c is not None and not c.failed]
        best = (max if definition.higher_is_better else min)(values) if values else None
        arrow = "↑" if definition.higher_is_better else "↓"
        metric = f"{definition.metric} {arrow}"
        if any(c is not None and c.cer is not None for c in cells):
            metric += " (CER)"
        text = []
        for cell in cells:
            if cell is None:
                text.append("-")
                continue
            if cell.failed:  # never a number, never bold: the reason is in the Runs table
                text.append("failed")
                continue
            shown = _fmt(cell.value)
            shown = f"**{shown}**" if cell.value == best else shown
            if cell.cer is not None:
                shown += f" ({cell.cer:.2f})"
            text.append(shown)
        lines.append(f"| {row} | {probe} | {metric} | " + " | ".join(text) + " |")
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
    "seconds",
    "layer_weights", "status", "error",
)  # fmt: skip
"""``status`` is ``ok`` or ``failed: <reason>``; a failed run has an empty ``value`` and
``layer_weights`` and its full ``error``."""


def write_tables(results, folder, *, name: str, command: str, notes: str = "") -> tuple:
    """Write ``<folder>/<name>.md`` and ``<folder>/<name>.csv``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = folder / f"{name}.md", folder / f"{name}.csv"
    md_path.write_text(format_markdown(results, command=command, name=name, notes=notes))
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow([
                r.variant.label, r.variant.encoder, r.variant.pretrained, r.task,
                r.language or "", r.probe,
                r.metric, "" if r.failed else f"{r.value:.4f}", f"{r.seconds:.1f}",
                "" if r.failed else " ".join(f"{w:.4f}" for w in r.layer_weights),
                r.status, (r.error or "no finite score") if r.failed else "",
            ])  # fmt: skip
    return md_path, csv_path


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
    parser.add_argument("--recipes", default=str(REPO_MP3S), help="the MP3S recipe folder")
    parser.add_argument("--work_folder", default=None, help="default results/MP3S/<name>")
    parser.add_argument("--results_folder", default=None, help="default <recipes>/results")
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
    from speechbrain_ext.mp3s.baselines import load_mp3s_encoder
    from speechbrain_ext.mp3s.featurizer import SSLFeaturizer

    try:
        encoder = load_mp3s_encoder(spec, pretrained=True)
        noise = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
        SSLFeaturizer(encoder=encoder).encode_layers(noise, torch.ones(1))
    except (OSError, ValueError) as error:
        raise type(error)(f"--encoder {spec}: {error}") from error


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
    recipes = Path(args.recipes)
    work_folder = Path(args.work_folder or Path("results") / "MP3S" / name)
    results_folder = Path(args.results_folder or recipes / "results")
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
        recipes=recipes,
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
        results, results_folder, name=name, command=command, notes=notes
    )
    print(md_path.read_text())
    print(f"wrote {md_path} and {csv_path}")
    return int(any(r.error for r in results))
