"""The BEST-RQ model: features → masking → front end → encoder → linear head.

:func:`build_bestrq_model` is the one constructor used by the recipe, the
export (:mod:`speechbrain_ext.ssl.export`) and the benchmarks. Its keyword
arguments are recorded in ``model.config`` (JSON-serialisable), so the same
model can be rebuilt from that dict alone.

Example
-------
>>> import torch
>>> model = build_bestrq_model("conformer", num_layers=2, d_model=32, nhead=4,
...                            mixer="fastformer", kernel_size=7, codebook_size=64,
...                            front_end="stack")
>>> wavs, wav_lens = torch.randn(2, 16000), torch.tensor([1.0, 0.6])
>>> out = model(wavs, wav_lens)
>>> out["logits"].shape, out["targets"].shape, out["mask"].shape
(torch.Size([2, 26, 64]), torch.Size([2, 26]), torch.Size([2, 26]))
>>> bool(torch.isfinite(out["loss"]))
True
>>> [h.shape for h in model.encode(wavs, wav_lens)]  # front end, then every layer
[torch.Size([2, 26, 32]), torch.Size([2, 26, 32]), torch.Size([2, 26, 32])]
>>> rebuilt = build_bestrq_model(**model.config)
>>> sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())
True
"""

import copy
import inspect
import logging
import math

import torch
from torch import nn

from speechbrain_ext.nnet.encoders import ENCODERS, PRESETS, build_encoder, preset_config
from speechbrain_ext.nnet.encoders.presets import bestrq_preset
from speechbrain_ext.ssl.bestrq import BestRQ, masked_accuracy, pad_to_multiple
from speechbrain_ext.ssl.frontend import FilterbankFeatures, build_front_end

logger = logging.getLogger(__name__)


class BestRQEncoder(nn.Module):
    """Audio → every layer's representation: features, front end, encoder.

    This is what downstream tasks use (see :func:`speechbrain_ext.load_ssl_encoder`).

    Arguments
    ---------
    features : FilterbankFeatures
        Normalised fbank extractor.
    front_end : nn.Module
        Maps (batch, time, n_mels) to (batch, time / stride, d_model).
    encoder : nn.Module
        ``forward(x, key_padding_mask) -> list[Tensor]`` with attributes
        ``num_layers`` and ``d_model``.

    Attributes
    ----------
    num_layers : int
        Number of returned representations (front end + encoder layers).
    hidden_size : int
        Width of every representation.
    downsample_rate : int
        Audio samples per output frame (640: 10 ms hop × 4).
    """

    def __init__(self, *, features: FilterbankFeatures, front_end: nn.Module, encoder: nn.Module):
        super().__init__()
        self.features = features
        self.front_end = front_end
        self.encoder = encoder
        self.stride = front_end.stride
        self.num_layers = encoder.num_layers + 1
        self.hidden_size = encoder.d_model
        self.downsample_rate = features.hop_samples * self.stride

    def extract(self, wavs: torch.Tensor, wav_lens: torch.Tensor):
        """Normalised features padded to a multiple of the stride, and their lengths.

        Returns ``feats`` (batch, time, n_mels) and ``lengths`` (batch,) in frames.
        """
        if wavs.dim() != 2 or wav_lens.shape != wavs.shape[:1]:
            raise ValueError(
                f"expected wavs (batch, samples) and wav_lens (batch,), got "
                f"{tuple(wavs.shape)} and {tuple(wav_lens.shape)}"
            )
        feats = self.features(wavs, wav_lens)  # (batch, time, n_mels)
        lengths = self.features.frame_lengths(wav_lens, wavs.shape[1]).clamp(1, feats.shape[1])
        return pad_to_multiple(feats, self.stride), lengths

    def represent(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Front end and encoder outputs for (possibly masked) ``feats`` (batch, time, n_mels)."""
        x = self.front_end(feats)  # (batch, frames, d_model)
        frame_lengths = torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")
        key_padding_mask = torch.arange(x.shape[1], device=x.device) >= frame_lengths.to(
            x.device
        ).unsqueeze(1)  # (batch, frames), True = padded
        return [x, *self.encoder(x, key_padding_mask=key_padding_mask)]

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[torch.Tensor]:
        """Every representation (batch, frames, hidden_size), the front end's first."""
        return self.represent(*self.extract(wavs, wav_lens))


class BestRQModel(nn.Module):
    """BEST-RQ pretraining model: an encoder, the frozen objective and a linear head.

    Arguments
    ---------
    encoder : BestRQEncoder
        Features, front end and encoder.
    objective : BestRQ
        Masking, frozen quantizer and loss.
    config : dict or None
        The keyword arguments of :func:`build_bestrq_model` that made the model.
    """

    framework = "bestrq"

    def __init__(self, *, encoder: BestRQEncoder, objective: BestRQ, config: dict | None = None):
        super().__init__()
        if objective.stack != encoder.stride:
            raise ValueError(
                f"the quantizer stacks {objective.stack} frames but the front end "
                f"downsamples by {encoder.stride}; they must agree"
            )
        self.encoder = encoder
        self.objective = objective
        self.head = nn.Linear(encoder.hidden_size, objective.codebook_size)
        self.config = dict(config or {})

    def forward(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> dict:
        """The training forward pass.

        Arguments
        ---------
        wavs : torch.Tensor
            16 kHz audio (batch, samples).
        wav_lens : torch.Tensor
            Relative lengths (batch,).
        generator : torch.Generator, optional
            Random source of the mask and noise (on the model's device), for
            reproducible evaluation.

        Returns
        -------
        dict
            ``loss`` (masked cross-entropy), ``logits`` (batch, frames,
            codebook_size), ``targets`` and ``mask`` (batch, frames; True where the
            loss is taken), ``valid`` (batch, frames; False on padding), ``correct`` and
            ``num_masked`` (0-dim counts), ``hidden_states`` (every representation of the
            masked input, as :meth:`BestRQEncoder.represent`; what distillation matches).
        """
        feats, lengths = self.encoder.extract(wavs, wav_lens)
        targets = self.objective.targets(feats)  # from the unmasked features
        masked, mask = self.objective.mask(feats, lengths, generator=generator)
        hidden_states = self.encoder.represent(masked, lengths)  # each (batch, frames, d_model)
        logits = self.head(hidden_states[-1])  # (batch, frames, codebook_size)
        loss = self.objective.loss(logits, targets, mask)
        correct, num_masked = masked_accuracy(logits, targets, mask)
        return {
            "loss": loss,
            "logits": logits,
            "targets": targets,
            "mask": mask,
            "valid": self._valid_frames(lengths, logits.shape[1]).to(logits.device),
            "correct": correct,
            "num_masked": num_masked,
            "hidden_states": hidden_states,
        }

    def _valid_frames(self, lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """Bool (batch, frames), True on frames holding audio (``lengths``: fbank frames)."""
        stride = self.objective.stack
        valid_frames = torch.div(lengths + stride - 1, stride, rounding_mode="floor")
        return torch.arange(frames, device=lengths.device) < valid_frames.unsqueeze(1)

    def encode(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[torch.Tensor]:
        """Every representation without masking: front end output, then each layer's."""
        return self.encoder(wavs, wav_lens)

    @property
    def num_classes(self) -> int:
        """Number of classes to predict (codewords)."""
        return self.objective.codebook_size

    @torch.no_grad()
    def frame_targets(self, wavs: torch.Tensor, wav_lens: torch.Tensor):
        """Targets (batch, frames) of the unmasked audio and which frames are valid."""
        feats, lengths = self.encoder.extract(wavs, wav_lens)
        targets = self.objective.targets(feats)  # (batch, frames)
        return targets, self._valid_frames(lengths, targets.shape[1]).to(targets.device)

    def fresh_like(self) -> "BestRQModel":
        """A randomly initialised model of this configuration, with this model's frozen
        quantizer and feature normalisation (so its targets are the same).
        """
        fresh = build_bestrq_model(**self.config)
        fresh.objective.load_state_dict(self.objective.state_dict())
        fresh.encoder.features.load_state_dict(copy.deepcopy(self.encoder.features.state_dict()))
        return fresh


def encoder_config(encoder: str, encoder_kind: str | None = None, **overrides) -> dict:
    """The keyword arguments (with ``kind``) of the encoder described by a preset or kind.

    ``None`` overrides keep the preset's value. ``encoder_kind`` swaps the layer
    type of a preset (e.g. the Conformer presets as a Transformer of the same
    widths and mixer); options the new kind does not take (``kernel_size``...)
    are dropped, and logged. A Transformer swapped in gets HuBERT's convolutional
    position embedding (``pos_conv``; 16 groups, or the largest divisor of
    ``d_model`` below that), since its layers, unlike a Conformer's, carry no position.
    ``bestrq_<scale>_<mixer>`` with a mixer outside the study runs at the MHSA preset's
    widths (:func:`~speechbrain_ext.nnet.encoders.presets.bestrq_preset`).

    Example
    -------
    >>> cfg = encoder_config("conformer", num_layers=2, d_model=None)
    >>> cfg
    {'kind': 'conformer', 'num_layers': 2}
    >>> cfg = encoder_config("bestrq_base_mamba", encoder_kind="transformer")
    >>> cfg["kind"], cfg["d_model"], cfg["pos_conv"], cfg["pos_conv_groups"]
    ('transformer', 474, True, 2)
    >>> cfg = encoder_config("bestrq_base_performer")  # no study preset: the MHSA widths
    >>> cfg["mixer"], cfg["mixer_options"], cfg["d_model"]
    ('performer', {}, 576)
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if encoder in PRESETS:
        config = preset_config(encoder)
    elif encoder in ENCODERS:
        config = {"kind": encoder}
    elif encoder.startswith("bestrq_") and encoder.count("_") >= 2:
        # bestrq_<scale>_<mixer> for a mixer the study did not use, or a bad scale or mixer
        scale, _, mixer = encoder.removeprefix("bestrq_").partition("_")
        preset, preset_overrides = bestrq_preset(scale, mixer)
        config = {**preset_config(preset), **preset_overrides}
    else:
        build_encoder(encoder)  # raises the error listing valid names
    if encoder_kind is not None and encoder_kind != config["kind"]:
        accepted = inspect.signature(ENCODERS.get(encoder_kind)).parameters
        dropped = sorted(k for k in config if k != "kind" and k not in accepted)
        if dropped:
            logger.info("encoder kind %s does not take %s; dropped", encoder_kind, dropped)
        config = {k: v for k, v in config.items() if k not in dropped}
        config["kind"] = encoder_kind
        if encoder_kind == "transformer" and "pos_conv" not in overrides:
            # A Conformer's convolution module carries position; a Transformer layer has none,
            # so the swapped-in Transformer gets HuBERT's convolutional position embedding.
            config["pos_conv"] = True
    config.update(overrides)
    if config.get("pos_conv") and "pos_conv_groups" not in overrides and "d_model" in config:
        # HuBERT uses 16 groups; the study widths (616, 632, 474...) need a divisor of d_model.
        config["pos_conv_groups"] = math.gcd(config["d_model"], 16)
    return config


def build_bestrq_model(
    encoder: str = "bestrq_base_fastformer",
    *,
    codebook_size: int = 8192,
    codebook_dim: int = 16,
    mask_prob: float = 0.15,
    mask_length: int = 4,
    noise_std: float = 0.1,
    quantizer_seed: int = 0,
    front_end: str = "conv",
    front_end_dropout: float = 0.1,
    n_mels: int = 80,
    norm_type: str = "sentence",
    encoder_kind: str | None = None,
    **encoder_overrides,
) -> BestRQModel:
    """Build a BEST-RQ model around an encoder preset or kind.

    Arguments
    ---------
    encoder : str
        Encoder preset (``bestrq_{base,large}_{mhsa,fastformer,hypermixing,
        summarymixing,mamba}``) or kind (``conformer``, ``transformer``...).
    codebook_size, codebook_dim : int
        Frozen codebook: number of codewords (classes) and their dimension.
    mask_prob, mask_length : float, int
        Span masking: probability for a 10 ms frame to start a span, span length.
    noise_std : float
        Std of the noise replacing masked frames.
    quantizer_seed : int
        Seed of the frozen projection and codebook.
    front_end : str
        ``"conv"`` (Study B) or ``"stack"`` (×4 stacking + linear).
    front_end_dropout : float
        Dropout of the front end.
    n_mels : int
        Fbank channels.
    norm_type : str
        Feature normalisation, ``"sentence"`` or ``"global"``.
    encoder_kind : str or None
        Swap the preset's layer type (e.g. ``"transformer"``); None keeps it.
    **encoder_overrides
        Encoder keyword arguments replacing the preset's (``num_layers``,
        ``d_model``, ``nhead``, ``d_ffn``, ``mixer``, ``dropout``...); ``None``
        values keep the preset's.

    Returns
    -------
    BestRQModel
        With ``model.config`` holding these arguments.
    """
    config = {
        "encoder": encoder,
        "codebook_size": codebook_size,
        "codebook_dim": codebook_dim,
        "mask_prob": mask_prob,
        "mask_length": mask_length,
        "noise_std": noise_std,
        "quantizer_seed": quantizer_seed,
        "front_end": front_end,
        "front_end_dropout": front_end_dropout,
        "n_mels": n_mels,
        "norm_type": norm_type,
        "encoder_kind": encoder_kind,
        **encoder_overrides,
    }
    enc_config = encoder_config(encoder, encoder_kind, **encoder_overrides)
    kind = enc_config.pop("kind")
    layers = build_encoder(kind, **enc_config)
    front = build_front_end(
        front_end, n_mels=n_mels, d_model=layers.d_model, dropout=front_end_dropout
    )
    objective = BestRQ(
        input_dim=n_mels,
        stack=front.stride,
        codebook_size=codebook_size,
        codebook_dim=codebook_dim,
        mask_prob=mask_prob,
        mask_length=mask_length,
        noise_std=noise_std,
        seed=quantizer_seed,
    )
    features = FilterbankFeatures(n_mels=n_mels, norm_type=norm_type)
    return BestRQModel(
        encoder=BestRQEncoder(features=features, front_end=front, encoder=layers),
        objective=objective,
        config=config,
    )
