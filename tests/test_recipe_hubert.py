"""Smoke tests of the HuBERT recipe: the real train.py, in subprocesses, on tiny data."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import recipe_runs
from processes import kill_when
from recipe_runs import REPO, logged_steps, recipe_env, tiny_corpus_args

from speechbrain_ext.hparams import resolve_variant

RECIPE = REPO / "recipes" / "HuBERT"
STUDY_A = {
    "hubert_transformer.yaml": "hubert_base_transformer",
    "hubert_conformer_s.yaml": "conformer_s",
    "hubert_squeezeformer_xs.yaml": "squeezeformer_xs",
    "hubert_sparseformer_dn_s.yaml": "sparseformer_dn_s",
    "hubert_sparseformer_sw_s.yaml": "sparseformer_sw_s",
}
TINY = [
    "--num_encoder_layers=2",
    "--d_model=32",
    "--nhead=4",
    "--d_ffn=64",
    "--extractor_channels=16",
    "--final_dim=16",
    "--num_clusters=[8,12]",
    "--kmeans_fraction=0.5",
    "--max_batch_len=8",
    "--grad_accumulation_factor=1",
    "--warmup_steps=2",
    "--total_steps=20",
    "--log_interval=1",
    "--num_workers=0",
    "--noprogressbar",
]


@pytest.fixture(scope="session")
def data_args(tmp_path_factory) -> list[str]:
    """Command-line arguments pointing the recipe at a tiny corpus (built once)."""
    return tiny_corpus_args(tmp_path_factory.mktemp("hubert_data"))


def run_recipe(yaml: str, output: Path, *args, **options):
    """Run the HuBERT train.py on ``hparams/<yaml>`` into ``output``."""
    return recipe_runs.run_recipe(RECIPE, yaml, output, *args, **options)


def test_the_study_a_yamls_set_their_encoder_on_one_base():
    for yaml, preset in STUDY_A.items():
        base, values = resolve_variant(RECIPE / "hparams" / yaml)
        assert base == RECIPE / "hparams" / "hubert.yaml"
        assert values == {"encoder": preset}


@pytest.mark.parametrize("yaml", sorted(STUDY_A))
def test_each_study_a_yaml_trains_a_few_steps(yaml, data_args, tmp_path):
    extra = ["--optimizer_step_limit=2", "--iterations=1"]
    if yaml == "hubert_conformer_s.yaml":  # both iterations, the second on layer-1 features
        extra = ["--optimizer_step_limit=2"]
    if yaml == "hubert_sparseformer_dn_s.yaml":
        extra.append("--precision=bf16")  # the autocast path GPUs take, here on the CPU
    run_recipe(yaml, tmp_path, *data_args, *TINY, *extra)
    iterations = [1, 2] if yaml == "hubert_conformer_s.yaml" else [1]
    for iteration in iterations:
        folder = tmp_path / f"iter{iteration}"
        assert [step for step, _ in logged_steps(folder)] == [1, 2]
        assert all(np.isfinite(loss) for _, loss in logged_steps(folder))
        results = json.loads((folder / "results.json").read_text())
        assert set(results["accuracy"]) == {"trained", "most_frequent_class", "random_init"}
        assert results["num_classes"] == [8, 12][iteration - 1]
        assert list((folder / "save").glob("CKPT+*/model.ckpt"))
        targets = json.loads((folder / "targets" / "targets.json").read_text())
        assert targets["num_clusters"] == [8, 12][iteration - 1]
        if "--builtin_folder" in " ".join(data_args):  # the built-in corpus has alignments
            assert 0 < targets["cluster_quality"]["valid"]["pnmi"] < 1
    if len(iterations) == 2:
        targets = json.loads((tmp_path / "iter2" / "targets" / "targets.json").read_text())
        assert targets["source"] == f"layer 1 of {(tmp_path / 'iter1').resolve()}"
    if "--precision=bf16" in extra:
        assert "training precision: `--precision=bf16`" in (tmp_path / "log.txt").read_text()
    assert (tmp_path / "results.md").read_text().count("| ") > 5
    from speechbrain_ext import load_ssl_encoder

    encoder = load_ssl_encoder(tmp_path)  # the run folder: its latest iteration
    assert (encoder.num_layers, encoder.hidden_size, encoder.downsample_rate) == (3, 32, 320)
    config = json.loads((tmp_path / f"iter{iterations[-1]}" / "hubert_model.json").read_text())
    assert config["encoder"] == STUDY_A[yaml]


def test_misspelt_key_and_bad_iterations_are_errors(data_args, tmp_path):
    proc = run_recipe("hubert_conformer_s.yaml", tmp_path, "--num_clustrs=[4]", check=False)
    assert proc.returncode != 0 and "num_clustrs" in proc.stderr + proc.stdout
    proc = run_recipe(
        "hubert_conformer_s.yaml", tmp_path / "b", *data_args, *TINY, "--iterations=3",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "gives no cluster count for iteration 3" in proc.stderr + proc.stdout


def test_killed_in_iteration_two_resumes_there(data_args, tmp_path):
    args = [*data_args, *TINY, "--optimizer_step_limit=8", "--ckpt_interval_steps=2"]
    command = [sys.executable, "train.py", "hparams/hubert_conformer_s.yaml"]
    command += [f"--output_folder={tmp_path}", *args]
    console = tmp_path.parent / f"{tmp_path.name}_killed_run.txt"
    second = tmp_path / "iter2"

    def three_steps_into_iteration_two() -> bool:
        log = second / "train_log.txt"
        return log.is_file() and any(step >= 3 for step, _ in logged_steps(second))

    kill_when(command, three_steps_into_iteration_two, cwd=RECIPE, env=recipe_env(),
              console=console)  # fmt: skip
    if not (second / "train_log.txt").is_file():
        pytest.fail("the first run never reached iteration 2:\n" + console.read_text()[-4000:])
    first_log = (tmp_path / "iter1" / "train_log.txt").read_text()
    before = logged_steps(second)
    assert before and max(step for step, _ in before) < 8, "the run ended before it was killed"
    targets = (second / "targets" / "train.npz").stat().st_mtime_ns
    run_recipe("hubert_conformer_s.yaml", tmp_path, *args)  # the same command again
    assert (tmp_path / "iter1" / "train_log.txt").read_text() == first_log  # not run again
    assert "iteration 1 is complete" in (tmp_path / "log.txt").read_text()
    assert (second / "targets" / "train.npz").stat().st_mtime_ns == targets  # labels reused
    after = logged_steps(second)[len(before) :]
    assert after[-1][0] == 8
    assert 1 < after[0][0] <= max(step for step, _ in before) + 1  # resumed, not restarted
    assert (second / "results.json").is_file()


def test_iteration_two_from_an_existing_iteration_one(data_args, tmp_path):
    first = tmp_path / "first"
    run_recipe("hubert_transformer.yaml", first, *data_args, *TINY, "--iterations=1",
               "--optimizer_step_limit=1")  # fmt: skip
    second = tmp_path / "second"
    run_recipe(
        "hubert_transformer.yaml", second, *data_args, *TINY, "--start_iteration=2",
        f"--iteration1_folder={first}", "--feature_layer=2", "--optimizer_step_limit=1",
    )  # fmt: skip
    assert not (second / "iter1").exists()
    targets = json.loads((second / "iter2" / "targets" / "targets.json").read_text())
    assert targets["source"] == f"layer 2 of {first.resolve()}"
    assert json.loads((second / "iter2" / "results.json").read_text())["iteration"] == 2


def test_ddp_gloo_two_processes_keep_identical_parameters(data_args, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_recipe(
        "hubert_sparseformer_sw_s.yaml",
        tmp_path,
        *data_args,
        *TINY,
        "--optimizer_step_limit=2",
        "--distributed_backend=gloo",
        "--device=cpu",
        launcher=launcher,
    )
    for iteration in (1, 2):
        check = json.loads((tmp_path / f"iter{iteration}" / "ddp_check.json").read_text())
        assert check["world_size"] == 2 and check["identical"], check


def test_profile_takes_a_hubert_yaml(tmp_path, monkeypatch):
    from speechbrain_ext.bench.profile import main

    monkeypatch.chdir(tmp_path)
    yaml = RECIPE / "hparams" / "hubert_sparseformer_dn_s.yaml"
    (row,) = main([str(yaml), "--seconds", "1", "--out", str(tmp_path / "out")])
    # Study A's Sparseformer-DN-S at its own size, inside the recipe's waveform front end
    assert 12e6 < row["params"] < 20e6 and row["gflop"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cpu_configuration_is_one_file_used_everywhere():
    """make hubert-demo, run_encoder_table.py and the README run hparams/cpu.yaml."""
    sys.path.insert(0, str(RECIPE))
    try:
        from run_encoder_table import CPU_SHAPES, CPU_YAML
    finally:
        sys.path.remove(str(RECIPE))
    assert CPU_YAML == "hparams/cpu.yaml" and sorted(CPU_SHAPES) == sorted(STUDY_A.values())
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    assert "train.py hparams/cpu.yaml --encoder=conformer_s" in makefile
    assert "hparams/cpu.yaml" in (RECIPE / "README.md").read_text()
    base, values = resolve_variant(RECIPE / CPU_YAML)
    assert base.name == "hubert.yaml" and values["optimizer_step_limit"] == values["total_steps"]


def test_quantization_chain_distils_the_teachers_last_iteration(data_args, tmp_path):
    """--quantize_chain from a trained FP32 HuBERT folder: each stage is a quantized student on
    the teacher's latest labels, loads with load_ssl_encoder, and a rerun skips finished stages.
    """
    from speechbrain_ext import load_ssl_encoder
    from speechbrain_ext.quant import is_quantized

    teacher = tmp_path / "fp32"
    run_recipe(
        "hubert_conformer_s.yaml", teacher, *data_args, *TINY, "--optimizer_step_limit=2",
        "--iterations=1",
    )  # fmt: skip
    chain = tmp_path / "chain"
    args = [*data_args, *TINY, "--optimizer_step_limit=2"]
    args += ["--quantize_chain=[w1a2,w1a1]", f"--teacher={teacher}"]
    run_recipe("hubert_conformer_s.yaml", chain, *args)
    for index, spec in ((1, "w1a2"), (2, "w1a1")):
        folder = chain / f"stage{index}_{spec}"
        assert json.loads((folder / "quantization.json").read_text()) == {"spec": spec}
        results = json.loads((folder / "results.json").read_text())
        assert results["quantization"] == spec and results["num_classes"] == 8
        assert [step for step, _ in logged_steps(folder)] == [1, 2]
    assert not (chain / "iter1").exists()  # no k-means, no FP32 iteration of its own
    encoder = load_ssl_encoder(chain / "stage2_w1a1")
    assert is_quantized(encoder) and encoder.downsample_rate == 320
    table = (chain / "results.md").read_text()
    assert "teacher (fp32)" in table and "stage2_w1a1 (w1a1)" in table
    proc = run_recipe("hubert_conformer_s.yaml", chain, *args)
    assert "stage w1a1 is complete" in proc.stdout + proc.stderr + (chain / "log.txt").read_text()

    proc = run_recipe(
        "hubert_conformer_s.yaml", tmp_path / "bad", *data_args, *TINY, "--quantize=w1a1",
        f"--teacher={tmp_path / 'nowhere'}", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "not a trained HuBERT output folder" in proc.stdout + proc.stderr
