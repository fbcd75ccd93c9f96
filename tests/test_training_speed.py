"""Training speed options: ``--compile`` (the compiled encoder trains like the eager one, keeps
its checkpoint keys, and falls back to eager with one warning when compilation fails) and the
recipes' opt-in fused AdamW (equal to the default per-parameter loop within fp32 rounding)."""

import logging
import math
import os

import pytest
import torch

from speechbrain_ext.ssl.compile import compile_encoder, encoder_to_compile, is_compiled
from speechbrain_ext.ssl.model import build_bestrq_model

#: Inductor generates and builds C++ at the first call (minutes on a loaded 2-core machine);
#: the tests trace with ``aot_eager`` (the same Dynamo graph and AOTAutograd forward/backward
#: split, without code generation) unless SPEECHBRAIN_EXT_TEST_INDUCTOR=1.
BACKEND = "inductor" if os.environ.get("SPEECHBRAIN_EXT_TEST_INDUCTOR") == "1" else "aot_eager"

requires_compile = pytest.mark.skipif(
    not hasattr(torch, "compile") or not torch._dynamo.is_dynamo_supported(),
    reason="torch.compile is not supported here",
)


def tiny_model():
    torch.manual_seed(0)
    return build_bestrq_model(
        "bestrq_base_mhsa",
        num_layers=1,
        d_model=32,
        nhead=4,
        d_ffn=64,
        codebook_size=32,
        dropout=0.0,  # dropout draws differ between eager and traced graphs
    )


def train_losses(model, steps=2):
    torch.manual_seed(2)  # anything the model draws from the global generator
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    wavs = torch.randn(2, 12000, generator=torch.Generator().manual_seed(1))
    wav_lens = torch.tensor([1.0, 0.75])
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        generator = torch.Generator().manual_seed(step)
        loss = model(wavs, wav_lens, generator=generator)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@requires_compile
def test_compiled_training_equals_eager_and_keeps_state_dict_keys():
    eager = tiny_model()
    compiled = tiny_model()
    keys = list(compiled.state_dict())
    assert compile_encoder(compiled, backend=BACKEND)
    assert list(compiled.state_dict()) == keys  # no _orig_mod. prefix: checkpoints load eagerly
    assert encoder_to_compile(compiled) is compiled.encoder.encoder
    expected = train_losses(eager)
    assert train_losses(compiled) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert is_compiled(compiled)  # it ran compiled, with no fallback
    # Adam moves each weight by about lr per step whatever the gradient's size, so a weight with
    # a near-zero gradient may step either way: bound the difference by 2 · lr · steps.
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=2 * 1e-3 * 2 + 1e-5, msg=name)
    eager.load_state_dict(compiled.state_dict())  # a compiled run's checkpoint loads eagerly


@requires_compile
def test_a_backend_failing_at_the_first_call_falls_back_to_eager(caplog):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    eager, model = tiny_model(), tiny_model()
    assert compile_encoder(model, backend=broken_backend)
    with caplog.at_level(logging.WARNING, logger="speechbrain_ext.ssl.compile"):
        losses = train_losses(model)
    assert losses == pytest.approx(train_losses(eager), rel=1e-5)
    warnings = [r for r in caplog.records if "falling back to eager" in r.getMessage()]
    assert len(warnings) == 1 and not is_compiled(model)


def test_a_refused_compile_leaves_the_model_eager(caplog, monkeypatch):
    model = tiny_model()
    with caplog.at_level(logging.WARNING, logger="speechbrain_ext.ssl.compile"):
        assert not compile_encoder(model, backend="no_such_backend")
        monkeypatch.delattr(torch, "compile")
        assert not compile_encoder(model)
    assert len(caplog.records) == 2 and not is_compiled(model)
    assert all("eagerly" in r.getMessage() for r in caplog.records)
    assert all(map(math.isfinite, train_losses(model, steps=1)))


def test_fused_adamw_equals_the_default_loop_and_the_recipes_offer_it():
    from pathlib import Path

    from speechbrain_ext.hparams import load_recipe_hparams

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    reference, fused = tiny_model(), tiny_model()
    grads = [[torch.randn_like(p) for p in reference.parameters()] for _ in range(3)]
    options = {"lr": 8e-4, "betas": (0.9, 0.98), "eps": 1e-9, "weight_decay": 0.01}
    optimizers = [
        torch.optim.AdamW(reference.parameters(), foreach=False, **options),
        torch.optim.AdamW(fused.parameters(), fused=True, **options),
    ]
    for step in range(6):
        for model, optimizer in zip((reference, fused), optimizers):
            for param, grad in zip(model.parameters(), grads[step % 3]):
                param.grad = grad.clone()
            optimizer.step()
    for a, b in zip(reference.parameters(), fused.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for yaml in ("BEST-RQ/hparams/bestrq.yaml", "HuBERT/hparams/hubert.yaml"):
        for fused in (False, True):
            hparams = load_recipe_hparams(recipes / yaml, f"optimizer_fused: {fused}")[0]
            optimizer = hparams["optimizer"](reference.parameters())
            assert bool(optimizer.defaults["fused"]) is fused, yaml
