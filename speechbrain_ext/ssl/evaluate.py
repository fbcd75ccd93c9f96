"""Proof of learning for SSL models: masked-prediction accuracy against two baselines.

On held-out audio, with the same masks and noise for every model (a seeded
generator), we report the masked-prediction accuracy of

- the trained model;
- the **most frequent class** baseline: always predict the class (BEST-RQ codeword,
  HuBERT cluster) most frequent among the training targets (the best input-independent
  guess);
- a **randomly initialised model** of the same configuration (for BEST-RQ with the same
  frozen quantizer, hence the same targets).

It serves BEST-RQ and HuBERT alike: a model gives ``frame_targets(wavs, wav_lens,
**inputs) -> (targets, valid)``, ``fresh_like()`` and ``num_classes``, and batches are
``(wavs, wav_lens)`` or ``(wavs, wav_lens, inputs)`` with ``inputs`` the model's keyword
inputs (HuBERT's ``targets``).

Example
-------
>>> import torch
>>> from speechbrain_ext.ssl.model import build_bestrq_model
>>> model = build_bestrq_model("conformer", num_layers=1, d_model=16, nhead=2,
...                            mixer="fastformer", kernel_size=3, codebook_size=8,
...                            front_end="stack")
>>> batches = [(torch.randn(2, 8000), torch.tensor([1.0, 0.7]))]
>>> counts = code_histogram(model, batches)
>>> int(counts.sum())  # every valid 40 ms frame of the two utterances
22
>>> results = proof_of_learning(model, batches, train_batches=batches, seed=0)
>>> sorted(results["accuracy"])
['most_frequent_class', 'random_init', 'trained']
>>> print(results_markdown(results).splitlines()[0])
| model | masked-prediction accuracy (%) | masked frames |
"""

from collections.abc import Iterable

import torch
from torch import nn

Batches = Iterable[tuple]


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _unpack(batch, device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    wavs, wav_lens, *rest = batch
    inputs = rest[0] if rest else {}
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return wavs.to(device), wav_lens.to(device), inputs


@torch.no_grad()
def code_histogram(
    model: nn.Module, batches: Batches, *, max_utterances: int | None = None
) -> torch.Tensor:
    """How often each class is the target of a valid (unpadded) frame.

    Arguments
    ---------
    model : nn.Module
        A BEST-RQ or HuBERT model (``frame_targets``, ``num_classes``).
    batches : iterable of (wavs, wav_lens[, inputs])
        Audio (batch, samples) and relative lengths (batch,).
    max_utterances : int, optional
        Stop after this many utterances.

    Returns
    -------
    torch.Tensor
        Counts (num_classes,), int64, on the CPU.
    """
    device = _device_of(model)
    counts = torch.zeros(model.num_classes, dtype=torch.long)
    seen = 0
    for batch in batches:
        wavs, wav_lens, inputs = _unpack(batch, device)
        targets, valid = model.frame_targets(wavs, wav_lens, **inputs)  # (batch, frames)
        counts += torch.bincount(targets[valid].long().cpu(), minlength=counts.numel())
        seen += wavs.shape[0]
        if max_utterances is not None and seen >= max_utterances:
            break
    return counts


@torch.no_grad()
def masked_prediction_accuracy(
    model: nn.Module,
    batches: Batches,
    *,
    seed: int = 0,
    constant_codes: dict[str, int] | None = None,
    max_batches: int | None = None,
) -> dict:
    """Masked-prediction accuracy and loss of ``model`` with seeded masks and noise.

    Arguments
    ---------
    model : nn.Module
        The model to evaluate (put in eval mode for the duration).
    batches : iterable of (wavs, wav_lens[, inputs])
        Held-out audio.
    seed : int
        Seed of the masks and noise: equal seeds give every model the same masks.
    constant_codes : dict of str to int, optional
        Constant predictors to score on the same masked frames (name → codeword).
    max_batches : int, optional
        Stop after this many batches.

    Returns
    -------
    dict
        ``accuracy`` and ``loss`` (means over masked frames), ``num_masked``,
        and ``constant_accuracy`` (name → accuracy) for ``constant_codes``.
    """
    device = _device_of(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    constant_codes = dict(constant_codes or {})
    was_training = model.training
    model.eval()
    correct = num_masked = 0
    loss_sum = 0.0
    constant_correct = dict.fromkeys(constant_codes, 0)
    try:
        for index, batch in enumerate(batches):
            if max_batches is not None and index >= max_batches:
                break
            wavs, wav_lens, inputs = _unpack(batch, device)
            out = model(wavs, wav_lens, generator=generator, **inputs)
            count = int(out["num_masked"])
            correct += int(out["correct"])
            num_masked += count
            loss_sum += float(out["loss"]) * count
            masked_targets = out["targets"][out["mask"]]
            for name, code in constant_codes.items():
                constant_correct[name] += int((masked_targets == code).sum())
    finally:
        model.train(was_training)
    if num_masked == 0:
        raise ValueError("no masked frames in the evaluation data (is it empty?)")
    return {
        "accuracy": correct / num_masked,
        "loss": loss_sum / num_masked,
        "num_masked": num_masked,
        "constant_accuracy": {k: v / num_masked for k, v in constant_correct.items()},
    }


def random_init_like(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A randomly initialised model of ``model``'s configuration (``model.fresh_like()``:
    for BEST-RQ with its frozen quantizer and feature normalisation, so the targets are the
    same), on ``model``'s device, drawn from ``seed`` without touching the global random state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = model.fresh_like()
    return fresh.to(_device_of(model))


def proof_of_learning(
    model: nn.Module,
    test_batches: Batches,
    *,
    train_batches: Batches,
    seed: int = 0,
    max_train_utterances: int | None = 2000,
    max_batches: int | None = None,
) -> dict:
    """The trained model's held-out masked-prediction accuracy beside two baselines.

    Arguments
    ---------
    model : nn.Module
        The trained model.
    test_batches : iterable of (wavs, wav_lens[, inputs])
        Held-out audio; iterated twice (trained and random model), so pass a
        re-iterable (a list or a DataLoader).
    train_batches : iterable of (wavs, wav_lens[, inputs])
        Training audio, for the codeword frequencies of the majority baseline.
    seed : int
        Seed of the evaluation masks and noise, and of the random model.
    max_train_utterances : int, optional
        Training utterances to count for the majority baseline.
    max_batches : int, optional
        Limit on test batches (debug runs).

    Returns
    -------
    dict
        ``accuracy`` (``trained``, ``most_frequent_class``, ``random_init``),
        ``loss`` (``trained``, ``random_init``), ``num_masked``,
        ``most_frequent_class``, ``num_classes`` and ``oracle_constant_accuracy``
        (the best constant guess chosen on the test targets themselves, an upper
        bound of any constant predictor).
    """
    counts = code_histogram(model, train_batches, max_utterances=max_train_utterances)
    majority = int(counts.argmax())
    test_counts = code_histogram(model, test_batches)
    oracle = int(test_counts.argmax())
    trained = masked_prediction_accuracy(
        model,
        test_batches,
        seed=seed,
        constant_codes={"majority": majority, "oracle": oracle},
        max_batches=max_batches,
    )
    random = masked_prediction_accuracy(
        random_init_like(model, seed=seed), test_batches, seed=seed, max_batches=max_batches
    )
    if random["num_masked"] != trained["num_masked"]:
        raise RuntimeError("the random model was scored on other frames than the trained one")
    return {
        "accuracy": {
            "trained": trained["accuracy"],
            "most_frequent_class": trained["constant_accuracy"]["majority"],
            "random_init": random["accuracy"],
        },
        "loss": {"trained": trained["loss"], "random_init": random["loss"]},
        "num_masked": trained["num_masked"],
        "most_frequent_class": majority,
        "oracle_constant_accuracy": trained["constant_accuracy"]["oracle"],
        "num_classes": model.num_classes,
    }


def results_markdown(results: dict) -> str:
    """A Markdown table of :func:`proof_of_learning`'s results."""
    names = {
        "trained": "trained model",
        "most_frequent_class": (
            f"most frequent class (#{results['most_frequent_class']} of {results['num_classes']})"
        ),
        "random_init": "randomly initialised model (same config)",
    }
    lines = [
        "| model | masked-prediction accuracy (%) | masked frames |",
        "|---|---|---|",
    ]
    for key, label in names.items():
        lines.append(
            f"| {label} | {100 * results['accuracy'][key]:.2f} | {results['num_masked']} |"
        )
    lines.append(
        f"| (best constant chosen on the test targets) | "
        f"{100 * results['oracle_constant_accuracy']:.2f} | {results['num_masked']} |"
    )
    return "\n".join(lines)
