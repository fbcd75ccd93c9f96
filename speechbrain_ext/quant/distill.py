"""BiT multi-distillation: a quantized student taught by its frozen full-precision teacher.

:class:`DistillationModel` has the protocol of the SSL models (``forward(wavs, wav_lens, *,
generator=None, **inputs) -> dict`` with ``loss``, ``correct``, ``num_masked``), so the shared
:class:`~speechbrain_ext.ssl.training.SSLBrain` trains it unchanged. Its loss (Liu et al. 2022,
BiT) is

    logit_weight · T² · CE(softmax(teacher logits / T), student logits / T)   on masked frames
    + hidden_weight · Σ_layers MSE(student layer, teacher layer)               on valid frames
    + target_weight · the student's own masked-prediction loss                 (0 as in BiT)

where the layers are every representation of the model's encoder (front end, then each layer)
for the masked input. Student and teacher see the same mask and noise: one seed is drawn per
batch (from ``generator``, else the global RNG) and each model masks with its own generator
seeded with it. ``correct`` and ``num_masked`` are the student's predictions of the real targets.

:func:`make_student` builds the student: the teacher's weights in a model of the same
configuration, quantized with :func:`~speechbrain_ext.quant.quantize_model`, α initialised on a
batch. A quantized teacher (the previous stage of W1A4 → W1A2 → W1A1) works too: its latent FP32
weights initialise the student, whose quantizers start afresh.

Example
-------
>>> import torch
>>> from speechbrain_ext.ssl.model import build_bestrq_model
>>> teacher = build_bestrq_model("transformer", num_layers=1, d_model=16, nhead=2, d_ffn=32,
...                              codebook_size=8, front_end="stack")
>>> wavs, wav_lens = torch.randn(2, 8000), torch.tensor([1.0, 0.7])
>>> student = make_student(teacher, "w1a1", calibration_batch=(wavs, wav_lens))
>>> model = DistillationModel(student=student, teacher=teacher, temperature=2.0)
>>> out = model(wavs, wav_lens)
>>> sorted(out["distill"]), bool(torch.isfinite(out["loss"]))
(['hidden', 'logit', 'target'], True)
>>> out["loss"].backward()
>>> any(p.grad is not None for p in teacher.parameters())
False
>>> model.framework, model.num_classes, model.config == teacher.config
('bestrq', 8, True)
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.quant.model import (
    QUANTIZER_KEYS,
    initialize_quantizers,
    quantize_model,
)

SEED_RANGE = 2**62


def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``T² · mean over True frames of −Σ_c softmax(t/T)_c · log_softmax(s/T)_c``.

    Logits are (batch, frames, classes), ``mask`` (batch, frames); 0 when no frame is True.

    Example
    -------
    >>> s = torch.tensor([[[0.0, 0.0], [5.0, 0.0]]])
    >>> t = torch.tensor([[[0.0, 0.0], [0.0, 5.0]]])
    >>> round(float(soft_cross_entropy(s, t, torch.tensor([[True, False]]))), 4)  # log 2
    0.6931
    """
    mask = mask.to(student_logits.device, torch.bool)
    # Only the masked frames' (classes,) rows are normalised: about half the frames.
    log_p = F.log_softmax(student_logits[mask].float() / temperature, dim=-1)
    q = F.softmax(teacher_logits[mask].float() / temperature, dim=-1)
    total = -(q * log_p).sum() / mask.sum().clamp(min=1)
    return temperature**2 * total


def hidden_mse(
    student_states: list[torch.Tensor], teacher_states: list[torch.Tensor], valid: torch.Tensor
) -> torch.Tensor:
    """Σ over representations of the mean squared difference on ``valid`` frames.

    States are lists of (batch, frames, dim); ``valid`` is (batch, frames), True = audio.

    Example
    -------
    >>> a, b = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 1.0], [9.0, 9.0]]])
    >>> float(hidden_mse([a, a], [b, a], torch.tensor([[True, False]])))
    1.0
    """
    if len(student_states) != len(teacher_states):
        raise ValueError(
            f"student has {len(student_states)} representations, teacher "
            f"{len(teacher_states)}: they must share an architecture"
        )
    weight = valid.unsqueeze(-1).to(student_states[0].device, torch.float32)  # (batch, frames, 1)
    count = (weight.sum() * student_states[0].shape[-1]).clamp(min=1)
    total = student_states[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student_states, teacher_states, strict=True):
        total = total + ((s.float() - t.float()).pow(2) * weight).sum() / count
    return total


class DistillationModel(nn.Module):
    """A quantized student trained to match a frozen teacher (same architecture).

    Arguments
    ---------
    student : nn.Module
        The model trained (a BEST-RQ or HuBERT model, usually quantized).
    teacher : nn.Module
        The model matched: frozen (no gradient, always in eval mode).
    logit_weight : float
        Weight of the soft cross-entropy between the pretext logits on masked frames.
    hidden_weight : float
        Weight of the summed per-representation MSE on valid frames.
    temperature : float
        Softmax temperature of the logit term (which is scaled by T²).
    target_weight : float
        Weight of the student's own masked-prediction loss on the real targets (0 in BiT).
    """

    def __init__(
        self,
        *,
        student: nn.Module,
        teacher: nn.Module,
        logit_weight: float = 1.0,
        hidden_weight: float = 1.0,
        temperature: float = 1.0,
        target_weight: float = 0.0,
    ):
        super().__init__()
        if type(student) is not type(teacher) or student.config != teacher.config:
            raise ValueError("student and teacher must be models of the same configuration")
        if min(logit_weight, hidden_weight, target_weight) < 0 or temperature <= 0:
            raise ValueError("distillation weights must be >= 0 and the temperature > 0")
        self.student = student
        self.teacher = teacher.eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        self.logit_weight, self.hidden_weight = logit_weight, hidden_weight
        self.temperature, self.target_weight = temperature, target_weight

    def train(self, mode: bool = True) -> "DistillationModel":
        """Set the student's mode; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        **inputs,
    ) -> dict:
        """The distillation loss and the student's masked-prediction counts.

        Returns the student's output dict with ``loss`` replaced by the distillation loss and
        ``distill`` holding its detached terms (``logit``, ``hidden``, ``target``) and
        ``teacher_mask`` (the teacher's mask; equal to ``mask``).
        """
        seed = int(torch.randint(SEED_RANGE, (1,), generator=generator, device=_device(generator)))
        device = wavs.device

        def masks() -> torch.Generator:
            return torch.Generator(device=device).manual_seed(seed)

        out = self.student(wavs, wav_lens, generator=masks(), **inputs)
        with torch.no_grad():
            teacher_out = self.teacher(wavs, wav_lens, generator=masks(), **inputs)
        logit = soft_cross_entropy(
            out["logits"], teacher_out["logits"], out["mask"], temperature=self.temperature
        )
        hidden = hidden_mse(out["hidden_states"], teacher_out["hidden_states"], out["valid"])
        target = out["loss"]
        loss = self.logit_weight * logit + self.hidden_weight * hidden
        if self.target_weight:
            loss = loss + self.target_weight * target
        return {
            **out,
            "loss": loss,
            "teacher_mask": teacher_out["mask"],
            "distill": {
                "logit": logit.detach(),
                "hidden": hidden.detach(),
                "target": target.detach(),
            },
        }

    def encode(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[torch.Tensor]:
        """The student's representations (no masking)."""
        return self.student.encode(wavs, wav_lens)

    def frame_targets(self, wavs: torch.Tensor, wav_lens: torch.Tensor, **inputs):
        """The student's targets and valid frames."""
        return self.student.frame_targets(wavs, wav_lens, **inputs)

    def fresh_like(self) -> nn.Module:
        """A randomly initialised FP32 model of the student's configuration."""
        return self.student.fresh_like()

    @property
    def num_classes(self) -> int:
        """Classes the student predicts."""
        return self.student.num_classes

    @property
    def config(self) -> dict:
        """The student's (and teacher's) builder arguments."""
        return self.student.config

    @property
    def framework(self) -> str:
        """The student's SSL framework (``bestrq``, ``hubert``)."""
        return self.student.framework


def _device(generator: torch.Generator | None) -> torch.device | str:
    return generator.device if generator is not None else "cpu"


def make_student(teacher: nn.Module, spec, *, calibration_batch) -> nn.Module:
    """The teacher's weights in a new model of its configuration, quantized with ``spec``.

    Arguments
    ---------
    teacher : nn.Module
        An SSL model (``fresh_like()``, ``state_dict()``), FP32 or quantized (then its latent
        FP32 weights are taken and its quantizers' α and β left behind).
    spec : str, dict or QuantSpec
        The student's quantization (``"w1a1"``, ``"w1a2,keep=encoder.front_end"``...).
    calibration_batch : tuple
        ``(wavs, wav_lens)`` or ``(wavs, wav_lens, inputs)``: α of every activation quantizer is
        initialised on it (:func:`~speechbrain_ext.quant.initialize_quantizers`).

    Returns
    -------
    nn.Module
        The quantized student, on the teacher's device, in training mode.

    Example
    -------
    >>> from speechbrain_ext.ssl.model import build_bestrq_model
    >>> teacher = build_bestrq_model("transformer", num_layers=1, d_model=16, nhead=2,
    ...                              d_ffn=32, codebook_size=8, front_end="stack")
    >>> batch = (torch.randn(1, 4000), torch.ones(1))
    >>> w1a2 = make_student(teacher, "w1a2", calibration_batch=batch)
    >>> w1a1 = make_student(w1a2, "w1a1", calibration_batch=batch)  # the next stage
    >>> w1a1.quant_spec, bool(torch.equal(w1a1.head.weight, teacher.head.weight))
    ('w1a1', True)
    """
    wavs, wav_lens, *rest = calibration_batch
    inputs = rest[0] if rest else {}
    student = teacher.fresh_like()
    state = {
        k: v for k, v in teacher.state_dict().items() if not any(q in k for q in QUANTIZER_KEYS)
    }
    student.load_state_dict(state)  # strict: every FP32 entry, nothing else
    device = next(teacher.parameters()).device
    student = quantize_model(student.to(device), spec).to(device)
    initialize_quantizers(student, wavs.to(device), wav_lens.to(device), **inputs)
    return student.train()
