"""Smoke tests of the BEST-RQ recipe: the real train.py, in subprocesses, on tiny data."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hyperpyyaml import load_hyperpyyaml
from processes import kill_when

from speechbrain_ext.nnet.mixers import list_mixers

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "BEST-RQ"
MIXERS = ["mhsa", "fastformer", "hypermixing", "summarymixing", "mamba"]
TINY = [
    "--num_encoder_layers=1",
    "--d_model=32",
    "--nhead=4",
    "--d_ffn=64",
    "--codebook_size=32",
    "--max_batch_len=8",
    "--grad_accumulation_factor=1",
    "--warmup_steps=10",
    "--log_interval=1",
    "--num_workers=0",
    "--noprogressbar",
]


def _synthetic_corpus(root: Path) -> list[str]:
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


@pytest.fixture(scope="session")
def data_args(tmp_path_factory) -> list[str]:
    """Command-line arguments pointing the recipe at a tiny corpus (built once)."""
    root = tmp_path_factory.mktemp("bestrq_data")
    try:
        from speechbrain_ext.corpus import EspeakUnavailableError, ensure_builtin_corpus
    except ImportError:
        return _synthetic_corpus(root)
    try:
        ensure_builtin_corpus(root / "builtin", minutes=2, progress=False)
    except EspeakUnavailableError:
        return _synthetic_corpus(root)
    return [f"--builtin_folder={root / 'builtin'}", "--builtin_minutes=2"]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("RANK", None)
    env.pop("LOCAL_RANK", None)
    return env


def run_recipe(yaml: str, output: Path, *args, launcher=(), check=True, timeout=300):
    """Run train.py on ``hparams/<yaml>`` into ``output``; returns the CompletedProcess."""
    command = [
        *(launcher or [sys.executable]),
        "train.py",
        f"hparams/{yaml}",
        f"--output_folder={output}",
        *args,
    ]
    proc = subprocess.run(
        command, cwd=RECIPE, env=_env(), capture_output=True, text=True, timeout=timeout
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


def test_the_five_yamls_differ_only_in_the_mixer():
    base = (RECIPE / "hparams" / "bestrq_fastformer.yaml").read_text().splitlines()
    for mixer in MIXERS:
        lines = (RECIPE / "hparams" / f"bestrq_{mixer}.yaml").read_text().splitlines()
        assert len(lines) == len(base)
        differ = [b for a, b in zip(base, lines) if a != b and not b.startswith("#")]
        assert differ == ([] if mixer == "fastformer" else [b for b in differ])
        assert all(line.startswith("mixer: ") for line in differ), differ


@pytest.mark.parametrize("mixer", MIXERS)
def test_yaml_builds_the_study_preset_and_switches(mixer, tmp_path):
    if mixer not in list_mixers():
        pytest.skip(f"mixer {mixer!r} is not registered yet")
    tiny = "num_encoder_layers: 1\nd_model: 16\nnhead: 2\nd_ffn: 32\ncodebook_size: 8\n"
    tiny += f"output_folder: {tmp_path}\n"  # loading the yaml creates the TensorBoard folder
    path = RECIPE / "hparams" / f"bestrq_{mixer}.yaml"
    for extra, encoder, kind in (
        ("", f"bestrq_base_{mixer}", "ConformerEncoder"),
        ("scale: large\n", f"bestrq_large_{mixer}", "ConformerEncoder"),
        ("encoder_kind: transformer\n", f"bestrq_base_{mixer}", "TransformerEncoder"),
    ):
        with open(path) as fin:
            hparams = load_hyperpyyaml(fin, tiny + extra)
        model = hparams["modules"]["model"]
        assert model.config["encoder"] == encoder
        assert type(model.encoder.encoder).__name__ == kind
        assert model.config["codebook_size"] == 8 and model.encoder.hidden_size == 16
    with open(path) as fin:  # the defaults are the study's: 8192 codes, conv front end
        text = fin.read()
    assert "codebook_size: 8192" in text and "front_end: conv" in text


def test_any_registered_mixer_and_clear_errors_for_bad_ones(tmp_path):
    path = RECIPE / "hparams" / "bestrq_mhsa.yaml"
    tiny = f"num_encoder_layers: 1\ncodebook_size: 8\noutput_folder: {tmp_path}\n"

    def load(extra: str):
        with open(path) as fin:
            return load_hyperpyyaml(fin, tiny + extra)["modules"]["model"]

    # A combination neither study tried: a Transformer with Performer attention, built at the
    # MHSA preset's widths since the study has no Performer preset.
    model = load("mixer: performer\nencoder_kind: transformer\n")
    encoder = model.encoder.encoder
    assert type(encoder).__name__ == "TransformerEncoder" and encoder.d_model == 576
    assert type(encoder.layers[0].mixer).__name__ == "PerformerAttention"
    with pytest.raises(KeyError, match="unknown mixer 'mhsaa'; valid names: .*performer"):
        load("mixer: mhsaa\n")
    with pytest.raises(ValueError, match="scale must be one of base, large; got 'huge'"):
        load("scale: huge\n")


def test_misspelt_key_is_an_error(tmp_path):
    proc = run_recipe("bestrq_fastformer.yaml", tmp_path, "--d_modle=32", check=False)
    assert proc.returncode != 0
    assert "d_modle" in proc.stderr + proc.stdout


@pytest.mark.parametrize("mixer", MIXERS)
def test_each_mixer_trains_a_few_steps(mixer, data_args, tmp_path):
    if mixer not in list_mixers():
        pytest.skip(f"mixer {mixer!r} is not registered yet")
    extra = ["--optimizer_step_limit=2"]
    if mixer == "hypermixing":
        extra = ["--debug", "--debug_batches=2", "--debug_epochs=1"]  # SpeechBrain's --debug
    if mixer != "fastformer":
        extra.append("--front_end=stack")  # the study's conv front end is run once below
    if mixer in ("mamba", "summarymixing"):
        extra.append("--precision=bf16")  # the autocast path GPUs take, here on the CPU
    run_recipe(f"bestrq_{mixer}.yaml", tmp_path, *data_args, *TINY, *extra)
    steps = logged_steps(tmp_path)
    assert [step for step, _ in steps] == [1, 2]
    assert all(np.isfinite(loss) for _, loss in steps)
    if "--precision=bf16" in extra:
        assert "training precision: `--precision=bf16`" in (tmp_path / "log.txt").read_text()
    if mixer != "hypermixing":  # --debug keeps its checkpoints in a temporary folder
        assert list((tmp_path / "save").glob("CKPT+*/model.ckpt"))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["accuracy"]) == {"trained", "most_frequent_codeword", "random_init"}
    assert results["num_masked"] > 0
    assert (tmp_path / "results.md").is_file()
    if mixer == "fastformer":
        from speechbrain_ext import load_ssl_encoder

        encoder = load_ssl_encoder(tmp_path)
        assert encoder.num_layers == 2 and encoder.hidden_size == 32


def test_killed_run_resumes_from_its_last_checkpoint(data_args, tmp_path):
    args = [
        *data_args,
        *TINY,
        "--front_end=stack",
        "--optimizer_step_limit=12",
        "--ckpt_interval_steps=2",
    ]
    command = [sys.executable, "train.py", "hparams/bestrq_fastformer.yaml"]
    command += [f"--output_folder={tmp_path}", *args]
    console = tmp_path.parent / f"{tmp_path.name}_killed_run.txt"

    def five_steps_logged() -> bool:
        log = tmp_path / "train_log.txt"
        return log.is_file() and any(step >= 5 for step, _ in logged_steps(tmp_path))

    kill_when(command, five_steps_logged, cwd=RECIPE, env=_env(), console=console)
    if not (tmp_path / "train_log.txt").is_file():
        pytest.fail("the first run logged nothing:\n" + console.read_text()[-4000:])
    before = logged_steps(tmp_path)
    assert before and max(step for step, _ in before) < 12, "the run ended before it was killed"
    run_recipe("bestrq_fastformer.yaml", tmp_path, *args)  # the same command again
    after = logged_steps(tmp_path)[len(before) :]
    assert after[-1][0] == 12
    assert 1 < after[0][0] <= max(step for step, _ in before) + 1  # resumed, not restarted
    assert [step for step, _ in after] == list(range(after[0][0], 13))
    assert "Loading a checkpoint" in (tmp_path / "log.txt").read_text()


def test_ddp_gloo_two_processes_keep_identical_parameters(data_args, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_recipe(
        "bestrq_fastformer.yaml",
        tmp_path,
        *data_args,
        *TINY,
        "--front_end=stack",
        "--optimizer_step_limit=3",
        "--distributed_backend=gloo",
        "--device=cpu",
        launcher=launcher,
    )
    check = json.loads((tmp_path / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["identical"], check
    assert logged_steps(tmp_path)[-1][0] == 3


def test_non_finite_loss_stops_with_a_clear_error(data_args, tmp_path):
    # An infinite learning rate turns the weights into inf/nan after the first step.
    proc = run_recipe(
        "bestrq_fastformer.yaml",
        tmp_path,
        *data_args,
        *TINY,
        "--front_end=stack",
        "--lr=.inf",
        "--optimizer_step_limit=20",
        "--nonfinite_patience=1",
        check=False,
    )
    assert proc.returncode != 0
    assert "Loss is not finite and patience is exhausted" in proc.stdout + proc.stderr


def test_data_folder_prepares_librispeech(tmp_path):
    import importlib.util

    from corpus_fixtures import make_librispeech

    spec = importlib.util.spec_from_file_location("bestrq_train", RECIPE / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    make_librispeech(tmp_path / "data")
    hparams = {
        "data_folder": str(tmp_path / "data"),
        "output_folder": str(tmp_path / "out"),
        "train_splits": ["dev-clean"],
        "valid_split": "test-clean",
        "test_split": "test-clean",
        **dict.fromkeys(["train_csv", "valid_csv", "test_csv"]),
    }
    manifests = train.prepare_manifests(hparams)
    assert manifests["train"] == tmp_path / "out" / "manifests" / "train.csv"
    assert manifests["train"].read_text().count("dev-clean") == 3
    assert manifests["test"].is_file() and manifests["valid"] == manifests["test"]
    with pytest.raises(ValueError, match="missing"):
        train.prepare_manifests({**hparams, "train_csv": "x.csv"})


def test_cpu_configuration_is_the_same_everywhere():
    """The CPU-sized main job: Makefile (make demo), run_mixer_table.py and the README agree."""
    sys.path.insert(0, str(RECIPE))
    try:
        from run_mixer_table import CPU_OVERRIDES
    finally:
        sys.path.remove(str(RECIPE))
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    demo_args = re.search(r"^DEMO_ARGS :=(.*)$", makefile, flags=re.M).group(1).split()
    assert demo_args == list(CPU_OVERRIDES)
    readme = (RECIPE / "README.md").read_text().replace("\\\n", " ")
    assert all(arg in readme.split() for arg in CPU_OVERRIDES)
