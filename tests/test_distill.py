"""BiT multi-distillation: the loss, its gradients, shared masks, and the BEST-RQ recipe's
quantization-aware runs (one student, a two-stage chain that resumes)."""

import json
import shutil
from pathlib import Path

import pytest
import recipe_runs
import torch
import torch.nn.functional as F
from recipe_runs import logged_steps, tiny_corpus_args

from speechbrain_ext.quant import is_quantized, quantize_model
from speechbrain_ext.quant.distill import DistillationModel, make_student
from speechbrain_ext.ssl.export import load_ssl_encoder, load_ssl_model, resolve_model_files
from speechbrain_ext.ssl.model import build_bestrq_model

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "BEST-RQ"
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
    "--front_end=stack",
    "--optimizer_step_limit=2",
]


def tiny_teacher(seed: int = 0):
    torch.manual_seed(seed)
    return build_bestrq_model(
        "transformer",
        num_layers=2,
        d_model=16,
        nhead=2,
        d_ffn=32,
        codebook_size=8,
        front_end="stack",
        mask_prob=0.05,
    )


def batch():
    torch.manual_seed(1)
    return torch.randn(2, 12000), torch.tensor([1.0, 0.6])


def test_loss_equals_a_hand_computation():
    teacher = tiny_teacher()
    wavs, wav_lens = batch()
    student = make_student(teacher, "w1a1", calibration_batch=(wavs, wav_lens))
    model = DistillationModel(
        student=student,
        teacher=teacher,
        logit_weight=0.5,
        hidden_weight=2.0,
        temperature=2.0,
        target_weight=0.3,
    ).eval()
    out = model(wavs, wav_lens, generator=torch.Generator().manual_seed(7))

    # By hand: the seed the wrapper draws, then each model on its own generator.
    seed = int(torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(7)))
    s = student(wavs, wav_lens, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        t = teacher(wavs, wav_lens, generator=torch.Generator().manual_seed(seed))
    mask, valid = s["mask"], s["valid"]
    assert mask.any() and (~valid).any()  # padded frames exist and are left out
    temp = 2.0
    ce = []
    for b, f in mask.nonzero().tolist():
        q = F.softmax(t["logits"][b, f] / temp, dim=-1)
        ce.append(-(q * F.log_softmax(s["logits"][b, f] / temp, dim=-1)).sum())
    logit = temp**2 * torch.stack(ce).mean()
    hidden = sum(
        ((hs - ht)[valid] ** 2).mean()
        for hs, ht in zip(s["hidden_states"], t["hidden_states"], strict=True)
    )
    assert len(s["hidden_states"]) == 3  # the front end, then both layers
    expected = 0.5 * logit + 2.0 * hidden + 0.3 * s["loss"]
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["distill"]["logit"], logit)
    torch.testing.assert_close(out["distill"]["hidden"], hidden)
    assert int(out["correct"]) == int(s["correct"]) and int(out["num_masked"]) == int(mask.sum())


def test_student_and_teacher_see_the_same_mask_and_noise():
    teacher = tiny_teacher()
    wavs, wav_lens = batch()
    # An unquantized copy gives exactly the teacher's outputs iff mask and noise are the same.
    copy = make_student(teacher, "fp32", calibration_batch=(wavs, wav_lens))
    model = DistillationModel(student=copy, teacher=teacher).eval()
    masks = []
    for seed in (0, 1):
        out = model(wavs, wav_lens, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out["mask"], out["teacher_mask"])
        assert float(out["distill"]["hidden"]) == 0.0
        masks.append(out["mask"])
    assert not torch.equal(*masks)  # the mask does change from batch to batch
    model.train()  # dropout in the student, but the same mask (global RNG: no generator)
    out = model(wavs, wav_lens)
    assert torch.equal(out["mask"], out["teacher_mask"])
    assert not model.teacher.training and model.student.training


def test_only_the_student_learns():
    teacher = tiny_teacher()
    wavs, wav_lens = batch()
    student = make_student(teacher, "w1a1", calibration_batch=(wavs, wav_lens))
    model = DistillationModel(student=student, teacher=teacher).train()
    model(wavs, wav_lens)["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = dict(student.named_parameters())
    latent = [n for n in grads if n.endswith(".weight") and "encoder.encoder.layers" in n]
    scales = [n for n in grads if n.endswith((".alpha", ".beta"))]
    assert latent and scales
    for name in latent + scales:
        assert grads[name].grad is not None, name
    assert any(float(grads[n].grad.abs().sum()) > 0 for n in latent)
    assert any(float(grads[n].grad.abs().sum()) > 0 for n in scales if n.endswith(".alpha"))
    assert any(float(grads[n].grad.abs().sum()) > 0 for n in scales if n.endswith(".beta"))


def test_student_of_a_quantized_teacher_takes_its_latent_weights():
    teacher = tiny_teacher()
    wavs, wav_lens = batch()
    w1a2 = make_student(teacher, "w1a2", calibration_batch=(wavs, wav_lens))
    with torch.no_grad():
        next(w1a2.head.parameters()).add_(1.0)  # a trained stage differs from its teacher
    w1a1 = make_student(w1a2, "w1a1", calibration_batch=(wavs, wav_lens))
    assert w1a1.quant_spec == "w1a1" and torch.equal(w1a1.head.weight, w1a2.head.weight)
    other = build_bestrq_model(**{**teacher.config, "codebook_size": 16})
    with pytest.raises(ValueError, match="same configuration"):
        DistillationModel(student=w1a1, teacher=other)


@pytest.fixture(scope="module")
def data_args(tmp_path_factory) -> list[str]:
    return tiny_corpus_args(tmp_path_factory.mktemp("distill_data"))


@pytest.fixture(scope="module")
def fp32_folder(data_args, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fp32")
    recipe_runs.run_recipe(RECIPE, "bestrq_fastformer.yaml", folder, *data_args, *TINY)
    assert not (folder / "quantization.json").exists()
    return folder


def test_recipe_trains_a_w1a1_student_that_loads_back(data_args, fp32_folder, tmp_path):
    recipe_runs.run_recipe(
        RECIPE,
        "bestrq_fastformer.yaml",
        tmp_path,
        *data_args,
        *TINY,
        "--quantize=w1a1",
        f"--teacher={fp32_folder}",
    )
    assert [step for step, _ in logged_steps(tmp_path)] == [1, 2]
    assert json.loads((tmp_path / "quantization.json").read_text()) == {"spec": "w1a1"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quantization"] == "w1a1" and results["num_masked"] > 0

    _, weights = resolve_model_files(tmp_path)
    state = torch.load(weights, map_location="cpu")
    assert not any(k.startswith(("student.", "teacher.")) for k in state)  # the student only
    config = json.loads((tmp_path / "bestrq_model.json").read_text())
    assert config == json.loads((fp32_folder / "bestrq_model.json").read_text())
    by_hand = quantize_model(build_bestrq_model(**config), "w1a1")
    by_hand.load_state_dict(state)
    encoder = load_ssl_encoder(tmp_path)
    assert is_quantized(encoder)
    wavs, wav_lens = batch()
    with torch.no_grad():
        hidden = encoder(wavs, wav_lens)
        expected = by_hand.eval().encode(wavs, wav_lens)
        teacher = load_ssl_encoder(fp32_folder)(wavs, wav_lens)
    for h, e in zip(hidden, expected, strict=True):
        assert torch.equal(h, e)
    assert not torch.allclose(hidden[-1], teacher[-1])
    assert is_quantized(load_ssl_model(tmp_path, pretrained=False))


def test_missing_teacher_is_an_error_naming_the_key(data_args, tmp_path):
    proc = recipe_runs.run_recipe(
        RECIPE,
        "bestrq_fastformer.yaml",
        tmp_path,
        *data_args,
        *TINY,
        "--quantize=w1a1",
        check=False,
    )
    assert proc.returncode != 0 and "set teacher" in proc.stderr + proc.stdout


def test_two_stage_chain_runs_and_a_rerun_skips_finished_stages(data_args, fp32_folder, tmp_path):
    args = [*data_args, *TINY, "--quantize_chain=[w1a2,w1a1]", f"--teacher={fp32_folder}"]
    recipe_runs.run_recipe(RECIPE, "bestrq_fastformer.yaml", tmp_path, *args)
    stage1, stage2 = tmp_path / "stage1_w1a2", tmp_path / "stage2_w1a1"
    for folder, spec in ((stage1, "w1a2"), (stage2, "w1a1")):
        assert json.loads((folder / "quantization.json").read_text()) == {"spec": spec}
        assert json.loads((folder / "results.json").read_text())["quantization"] == spec
        assert [step for step, _ in logged_steps(folder)] == [1, 2]
    assert is_quantized(load_ssl_encoder(stage2))
    table = (tmp_path / "results.md").read_text()
    assert "teacher (fp32)" in table and "stage2_w1a1 (w1a1)" in table

    # A chain killed after stage 1: stage 2 is gone; the rerun keeps stage 1 as it was.
    shutil.rmtree(stage2)
    stage1_log = (stage1 / "train_log.txt").read_text()
    proc = recipe_runs.run_recipe(RECIPE, "bestrq_fastformer.yaml", tmp_path, *args)
    output = proc.stdout + proc.stderr + (tmp_path / "log.txt").read_text()
    assert "stage w1a2 is complete" in output
    assert f"distilling {stage1} into a w1a1 student" in output
    assert (stage1 / "train_log.txt").read_text() == stage1_log  # not retrained
    assert [step for step, _ in logged_steps(stage2)] == [1, 2]


def test_quantize_keep_leaves_the_front_end_fp32_in_every_stage(data_args, fp32_folder, tmp_path):
    args = [*data_args, *TINY, "--quantize_chain=[w1a1]", f"--teacher={fp32_folder}"]
    args.append("--quantize_keep=[encoder.front_end]")
    recipe_runs.run_recipe(RECIPE, "bestrq_fastformer.yaml", tmp_path, *args)
    stage = tmp_path / "stage1_w1a1"  # the folder keeps the bare spec's name
    spec = "w1a1,keep=encoder.front_end"
    assert json.loads((stage / "quantization.json").read_text()) == {"spec": spec}
    encoder = load_ssl_encoder(stage)
    assert not is_quantized(encoder.front_end)
    assert is_quantized(encoder.encoder)
