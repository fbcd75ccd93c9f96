"""Smoke tests of the BEST-RQ recipe: the real train.py, in subprocesses, on tiny data."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import recipe_runs
import soundfile as sf
import torch
from processes import kill_when
from recipe_runs import logged_steps, recipe_env, tiny_corpus_args

from speechbrain_ext.hparams import load_recipe_hparams, resolve_variant
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


@pytest.fixture(scope="session")
def data_args(tmp_path_factory) -> list[str]:
    """Command-line arguments pointing the recipe at a tiny corpus (built once)."""
    return tiny_corpus_args(tmp_path_factory.mktemp("bestrq_data"))


def run_recipe(yaml: str, output: Path, *args, **options):
    """Run the BEST-RQ train.py on ``hparams/<yaml>`` into ``output``."""
    return recipe_runs.run_recipe(RECIPE, yaml, output, *args, **options)


def test_the_five_yamls_set_only_the_mixer_on_one_base():
    for mixer in MIXERS:
        path = RECIPE / "hparams" / f"bestrq_{mixer}.yaml"
        base, values = resolve_variant(path)
        assert base == RECIPE / "hparams" / "bestrq.yaml"
        assert values == {"mixer": mixer}


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
        hparams = load_recipe_hparams(path, tiny + extra)[0]
        model = hparams["modules"]["model"]
        assert model.config["encoder"] == encoder
        assert type(model.encoder.encoder).__name__ == kind
        assert model.config["codebook_size"] == 8 and model.encoder.hidden_size == 16
    text = resolve_variant(path)[0].read_text()  # the defaults are the study's
    assert "codebook_size: 8192" in text and "front_end: conv" in text


def test_any_registered_mixer_and_clear_errors_for_bad_ones(tmp_path):
    path = RECIPE / "hparams" / "bestrq_mhsa.yaml"
    tiny = f"num_encoder_layers: 1\ncodebook_size: 8\noutput_folder: {tmp_path}\n"

    def load(extra: str):
        return load_recipe_hparams(path, tiny + extra)[0]["modules"]["model"]

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
    assert set(results["accuracy"]) == {"trained", "most_frequent_class", "random_init"}
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

    kill_when(command, five_steps_logged, cwd=RECIPE, env=recipe_env(), console=console)
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


def _checkpoints(output: Path) -> list[Path]:
    return sorted((output / "save").glob("CKPT+*"), key=lambda p: p.stat().st_mtime)


def test_divergence_never_replaces_the_last_good_checkpoint(data_args, tmp_path):
    args = [*data_args, *TINY, "--front_end=stack", "--ckpt_interval_steps=1"]
    run_recipe("bestrq_fastformer.yaml", tmp_path, *args, "--optimizer_step_limit=3")
    good = _checkpoints(tmp_path)
    assert good
    # The same folder with an infinite learning rate: the weights turn non-finite at step 4.
    proc = run_recipe(
        "bestrq_fastformer.yaml", tmp_path, *args, "--lr=.inf", "--optimizer_step_limit=8",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "optimiser step 4 made the weights non-finite" in output, output[-3000:]
    assert "the learning rate (now inf) is likely too high" in output
    assert (
        "not saving a checkpoint" in (tmp_path / "log.txt").read_text()
        or _checkpoints(tmp_path) == good
    )
    from speechbrain_ext import load_ssl_encoder

    encoder = load_ssl_encoder(tmp_path)  # the last good checkpoint: finite, loadable
    assert all(bool(torch.isfinite(p).all()) for p in encoder.parameters())
    assert all(
        all(bool(torch.isfinite(v).all()) for v in torch.load(c / "model.ckpt").values()
            if torch.is_tensor(v) and v.is_floating_point())
        for c in _checkpoints(tmp_path)
    )  # fmt: skip


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(data_args, tmp_path):
    args = [*data_args, *TINY, "--front_end=stack", "--ckpt_interval_steps=2"]
    run_recipe("bestrq_fastformer.yaml", tmp_path, *args, "--optimizer_step_limit=4")
    checkpoints = _checkpoints(tmp_path)
    assert len(checkpoints) >= 2
    newest = checkpoints[-1]
    (newest / "model.ckpt").write_bytes((newest / "model.ckpt").read_bytes()[:100])  # truncated
    run_recipe("bestrq_fastformer.yaml", tmp_path, *args, "--optimizer_step_limit=6")
    log = (tmp_path / "log.txt").read_text()
    assert f"checkpoint {newest} does not load" in log
    assert logged_steps(tmp_path)[-1][0] == 6


def test_a_rerun_with_another_model_or_data_stops_before_writing(data_args, tmp_path):
    args = [*data_args, *TINY, "--front_end=stack", "--optimizer_step_limit=1"]
    run_recipe("bestrq_fastformer.yaml", tmp_path, *args)
    config = (tmp_path / "bestrq_model.json").read_text()
    saved = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.is_file()}
    for change, key in (
        ("--d_model=48", "model.d_model"),
        ("--data_folder=/no/such", "data_folder"),
    ):
        proc = run_recipe("bestrq_fastformer.yaml", tmp_path, *args, change, check=False)
        assert proc.returncode != 0
        assert "holds a run made with another model or other data" in proc.stderr, proc.stderr
        assert key in proc.stderr and "--output_folder" in proc.stderr
    assert (tmp_path / "bestrq_model.json").read_text() == config
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.is_file()} == saved
    from speechbrain_ext import load_ssl_encoder

    assert load_ssl_encoder(tmp_path).hidden_size == 32


def test_a_resumed_run_gives_the_losses_of_an_uninterrupted_one(data_args, tmp_path):
    args = [*data_args, *TINY, "--front_end=stack", "--optimizer_step_limit=8",
            "--ckpt_interval_steps=2"]  # fmt: skip
    straight = tmp_path / "straight"
    run_recipe("bestrq_fastformer.yaml", straight, *args)
    expected = dict(logged_steps(straight))
    killed = tmp_path / "killed"
    command = [sys.executable, "train.py", "hparams/bestrq_fastformer.yaml"]
    command += [f"--output_folder={killed}", *args]

    def five_steps_logged() -> bool:
        log = killed / "train_log.txt"
        return log.is_file() and any(step >= 5 for step, _ in logged_steps(killed))

    kill_when(command, five_steps_logged, cwd=RECIPE, env=recipe_env(),
              console=tmp_path / "console.txt")  # fmt: skip
    assert max(step for step, _ in logged_steps(killed)) < 8, "the run ended before it was killed"
    run_recipe("bestrq_fastformer.yaml", killed, *args)
    resumed = dict(logged_steps(killed))  # later lines (after the resume) win
    assert sorted(resumed) == sorted(expected) == list(range(1, 9))
    assert resumed == expected


def test_data_folder_prepares_librispeech(tmp_path):
    from corpus_fixtures import make_librispeech

    from speechbrain_ext.ssl.training import prepare_manifests

    make_librispeech(tmp_path / "data")
    hparams = {
        "data_folder": str(tmp_path / "data"),
        "output_folder": str(tmp_path / "out"),
        "train_splits": ["dev-clean"],
        "valid_split": "test-clean",
        "test_split": "test-clean",
        **dict.fromkeys(["train_csv", "valid_csv", "test_csv"]),
    }
    manifests = prepare_manifests(hparams, default_builtin_folder=tmp_path / "unused")
    assert manifests["train"] == tmp_path / "out" / "manifests" / "train.csv"
    assert manifests["train"].read_text().count("dev-clean") == 3
    assert manifests["test"].is_file() and manifests["valid"] == manifests["test"]
    with pytest.raises(ValueError, match="missing"):
        prepare_manifests({**hparams, "train_csv": "x.csv"}, default_builtin_folder=tmp_path)


def test_cpu_configuration_is_one_file_used_everywhere():
    """The CPU-sized main job is hparams/cpu.yaml: make demo, run_mixer_table.py and the
    READMEs run it, and nothing repeats its settings."""
    sys.path.insert(0, str(RECIPE))
    try:
        from run_mixer_table import CPU_YAML
    finally:
        sys.path.remove(str(RECIPE))
    assert CPU_YAML == "hparams/cpu.yaml"
    cpu = resolve_variant(RECIPE / CPU_YAML)[1]
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    demo = re.search(r"^demo:.*\n\t(.*)$", makefile, flags=re.M).group(1)
    assert "train.py hparams/cpu.yaml" in demo
    for text in (makefile, (RECIPE / "README.md").read_text(), (REPO / "README.md").read_text()):
        assert "--d_model=144" not in text and "--codebook_size=1024" not in text
    assert "hparams/cpu.yaml" in (RECIPE / "README.md").read_text()
    assert cpu["optimizer_step_limit"] == 1500 and cpu["d_model"] == 144


def test_own_manifests_are_validated_before_the_first_step(tmp_path):
    from recipe_runs import synthetic_corpus

    args = synthetic_corpus(tmp_path / "data")
    train_csv = tmp_path / "data" / "train.csv"
    rows = train_csv.read_text().splitlines()
    first = rows[1].split(",")
    rows.append(",".join(["bad_duration", "nan", *first[2:]]))
    train_csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    run_recipe("bestrq_fastformer.yaml", out, *args, *TINY, "--front_end=stack",
               "--optimizer_step_limit=1")  # fmt: skip
    log = (out / "log.txt").read_text()
    assert "11 row(s), kept 10" in log and "1 invalid duration (e.g. row 11: 'nan')" in log
    assert "bad_duration" not in (out / "manifests_checked" / "train.validated.csv").read_text()
    # A stereo file stops the run before training, naming the file.
    stereo = tmp_path / "data" / "stereo.wav"
    sf.write(stereo, np.zeros((16000, 2), dtype="float32"), 16000)
    rows = rows[:-1] + [",".join(["stereo", "1.0", str(stereo), "spk"])]
    train_csv.write_text("\n".join(rows) + "\n")
    proc = run_recipe("bestrq_fastformer.yaml", tmp_path / "run2", *args, *TINY,
                      "--front_end=stack", "--optimizer_step_limit=1", check=False)  # fmt: skip
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert str(stereo) in output and "mono" in output.lower(), output[-2000:]


def test_compile_trains_logs_the_padding_and_falls_back_when_it_cannot(data_args, tmp_path):
    # aot_eager: the Dynamo graph and AOTAutograd split without inductor's C++ builds (about a
    # minute per new batch shape on a loaded 2-core CPU; test_compile.py runs inductor on demand)
    common = [*data_args, *TINY, "--optimizer_step_limit=2", "--front_end=stack"]
    compiled = tmp_path / "compiled"
    proc = run_recipe(
        "bestrq_mhsa.yaml", compiled, *common, "--compile=True", "--compile_backend=aot_eager"
    )
    log = (compiled / "log.txt").read_text()
    assert "--compile: ConformerEncoder compiled (backend aot_eager" in log
    assert "falling back" not in log + proc.stderr
    text = (compiled / "train_log.txt").read_text()
    fractions = [float(v) for v in re.findall(r"padded_fraction: ([0-9.e+-]+)", text)]
    assert len(fractions) == 2 and all(0 <= f < 1 for f in fractions)
    checkpoint = next((compiled / "save").glob("CKPT+*/model.ckpt"))
    keys = set(torch.load(checkpoint, map_location="cpu"))
    assert not any("_orig_mod" in key for key in keys)
    from speechbrain_ext import load_ssl_encoder

    assert load_ssl_encoder(compiled).num_layers == 2  # loads with no compile at all

    refused = tmp_path / "refused"  # torch.compile refuses: one warning, an eager run
    proc = run_recipe(
        "bestrq_mhsa.yaml", refused, *common, "--compile", "--compile_backend=no_such_backend"
    )
    output = proc.stdout + proc.stderr + (refused / "log.txt").read_text()
    assert output.count("--compile: torch.compile of ConformerEncoder failed") >= 1
    assert "it runs eagerly" in output
    assert [step for step, _ in logged_steps(refused)] == [1, 2]
    assert set(torch.load(next((refused / "save").glob("CKPT+*/model.ckpt")))) == keys
