"""The HuBERT model: waveform CNN → masking → encoder → cosine head on cluster labels.

:func:`build_hubert_model` is the one constructor used by the recipe, the export and the
benchmarks; its keyword arguments are recorded in ``model.config`` (JSON-serialisable), so the
same model is rebuilt from that dict alone. The encoder is any preset or kind, as for BEST-RQ
(:func:`~speechbrain_ext.ssl.model.encoder_config`): Study A's ``hubert_base_transformer``,
``conformer_s``, ``squeezeformer_xs``, ``sparseformer_dn_s`` and ``sparseformer_sw_s``.

Example
-------
>>> import torch
>>> model = build_hubert_model("transformer", num_classes=10, num_layers=2, d_model=32,
...                            nhead=4, d_ffn=64, extractor_channels=16, final_dim=8)
>>> wavs, wav_lens = torch.randn(2, 16000), torch.tensor([1.0, 0.6])
>>> targets = torch.randint(10, (2, 49))
>>> out = model(wavs, wav_lens, targets=targets)
>>> out["logits"].shape, out["mask"].shape, bool(torch.isfinite(out["loss"]))
(torch.Size([2, 49, 10]), torch.Size([2, 49]), True)
>>> bool(out["mask"][1, 29:].any())  # never on padded frames
False
>>> hidden = model.encode(wavs, wav_lens)  # the projected CNN features, then every layer
>>> len(hidden), hidden[-1].shape, model.encoder.downsample_rate
(3, torch.Size([2, 49, 32]), 320)
>>> rebuilt = build_hubert_model(**model.config)
>>> sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())
True
"""

import torch
from torch import nn

from speechbrain_ext.nnet.encoders import build_encoder
from speechbrain_ext.nnet.masking import lengths_to_padding_mask
from speechbrain_ext.ssl.bestrq import masked_accuracy
from speechbrain_ext.ssl.hubert import CosineClassifier, compute_hubert_mask, hubert_loss
from speechbrain_ext.ssl.model import encoder_config
from speechbrain_ext.ssl.waveform import WaveformFrontEnd


class HubertEncoder(nn.Module):
    """Audio → every layer's representation: the waveform front end, then the encoder.

    The same contract as :class:`~speechbrain_ext.ssl.model.BestRQEncoder`, what downstream
    tasks use (:func:`speechbrain_ext.load_ssl_encoder`).

    Attributes
    ----------
    num_layers : int
        Number of returned representations (front end + encoder layers).
    hidden_size : int
        Width of every representation.
    downsample_rate : int
        Audio samples per output frame (320: 20 ms).
    """

    def __init__(self, *, front_end: WaveformFrontEnd, encoder: nn.Module):
        super().__init__()
        self.front_end = front_end
        self.encoder = encoder
        self.num_layers = encoder.num_layers + 1
        self.hidden_size = encoder.d_model
        self.downsample_rate = front_end.downsample_rate

    def extract(self, wavs: torch.Tensor, wav_lens: torch.Tensor):
        """Projected features (batch, frames, d_model), valid frames (batch,), feature penalty."""
        if wavs.dim() != 2 or wav_lens.shape != wavs.shape[:1]:
            raise ValueError(
                f"expected wavs (batch, samples) and wav_lens (batch,), got "
                f"{tuple(wavs.shape)} and {tuple(wav_lens.shape)}"
            )
        return self.front_end(wavs, wav_lens)

    def represent(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """``x`` (possibly masked) and every encoder layer's output for it."""
        key_padding_mask = lengths_to_padding_mask(lengths, x.shape[1])  # True = padded
        return [x, *self.encoder(x, key_padding_mask=key_padding_mask)]

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[torch.Tensor]:
        """Every representation (batch, frames, hidden_size), the front end's first."""
        x, lengths, _ = self.extract(wavs, wav_lens)
        return self.represent(x, lengths)


class HubertModel(nn.Module):
    """HuBERT pretraining model: encoder, mask embedding and cosine head.

    Arguments
    ---------
    encoder : HubertEncoder
        Waveform front end and encoder.
    num_classes : int
        Clusters of the current iteration's labels.
    final_dim, logit_temperature : int, float
        Cosine head (:class:`~speechbrain_ext.ssl.hubert.CosineClassifier`).
    mask_prob, mask_length, min_masks : float, int, int
        Span masking (:func:`~speechbrain_ext.ssl.hubert.compute_hubert_mask`).
    feature_penalty_weight : float
        Weight of the L2 penalty of the CNN features (10 in HuBERT).
    unmasked_weight : float
        Weight of the loss on unmasked frames (0 in HuBERT).
    config : dict or None
        The keyword arguments of :func:`build_hubert_model` that made the model.
    """

    framework = "hubert"

    def __init__(
        self,
        *,
        encoder: HubertEncoder,
        num_classes: int,
        final_dim: int = 256,
        logit_temperature: float = 0.1,
        mask_prob: float = 0.8,
        mask_length: int = 10,
        min_masks: int = 2,
        feature_penalty_weight: float = 10.0,
        unmasked_weight: float = 0.0,
        config: dict | None = None,
    ):
        super().__init__()
        compute_hubert_mask(
            torch.ones(1, dtype=torch.long),
            max_len=1,
            mask_prob=mask_prob,
            mask_length=mask_length,
            min_masks=min_masks,
        )  # validates the masking options
        if feature_penalty_weight < 0 or unmasked_weight < 0:
            raise ValueError("feature_penalty_weight and unmasked_weight must be >= 0")
        self.encoder = encoder
        self.head = CosineClassifier(
            d_model=encoder.hidden_size,
            num_classes=num_classes,
            final_dim=final_dim,
            temperature=logit_temperature,
        )
        self.mask_embedding = nn.Parameter(torch.empty(encoder.hidden_size).uniform_())
        self.mask_prob, self.mask_length, self.min_masks = mask_prob, mask_length, min_masks
        self.feature_penalty_weight = feature_penalty_weight
        self.unmasked_weight = unmasked_weight
        self.config = dict(config or {})

    @property
    def num_classes(self) -> int:
        """Number of classes to predict."""
        return self.head.num_classes

    def forward(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor,
        *,
        targets: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict:
        """The training forward pass.

        Arguments
        ---------
        wavs : torch.Tensor
            16 kHz audio (batch, samples).
        wav_lens : torch.Tensor
            Relative lengths (batch,).
        targets : torch.Tensor
            Cluster label of every 20 ms frame (batch, frames'), padded anyhow; ``frames'`` may
            exceed the model's frames by the padding of the batch.
        generator : torch.Generator, optional
            Random source of the mask, for reproducible evaluation.

        Returns
        -------
        dict
            ``loss``, ``logits`` (batch, frames, num_classes), ``targets``, ``mask`` (True
            where the masked loss is taken) and ``valid`` (batch, frames), ``correct`` and
            ``num_masked`` (0-dim counts), ``feature_penalty``, ``hidden_states`` (every
            representation of the masked input; what distillation matches).
        """
        x, lengths, penalty = self.encoder.extract(wavs, wav_lens)
        frames = x.shape[1]
        if targets.dim() != 2 or targets.shape[0] != x.shape[0] or targets.shape[1] < frames:
            raise ValueError(
                f"targets must be (batch, >= {frames} frames) for this audio, got "
                f"{tuple(targets.shape)}: were the labels made for another front end?"
            )
        targets = targets[:, :frames].long().to(x.device)
        valid = ~lengths_to_padding_mask(lengths, frames)
        mask = compute_hubert_mask(
            lengths,
            max_len=frames,
            mask_prob=self.mask_prob,
            mask_length=self.mask_length,
            min_masks=self.min_masks,
            generator=generator,
        )
        masked = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        hidden_states = self.encoder.represent(masked, lengths)  # each (batch, frames, d_model)
        logits = self.head(hidden_states[-1])  # (batch, frames, num_classes)
        loss = hubert_loss(logits, targets, mask, valid, unmasked_weight=self.unmasked_weight)
        loss = loss + self.feature_penalty_weight * penalty
        correct, num_masked = masked_accuracy(logits, targets, mask)
        return {
            "loss": loss,
            "logits": logits,
            "targets": targets,
            "mask": mask,
            "valid": valid,
            "correct": correct,
            "num_masked": num_masked,
            "feature_penalty": penalty.detach(),
            "hidden_states": hidden_states,
        }

    def encode(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[torch.Tensor]:
        """Every representation without masking."""
        return self.encoder(wavs, wav_lens)

    def frame_targets(self, wavs: torch.Tensor, wav_lens: torch.Tensor, *, targets):
        """``targets`` cut to the model's frames (batch, frames) and which frames are valid."""
        samples = torch.round(wav_lens * wavs.shape[1]).long()
        extractor = self.encoder.front_end.extractor
        lengths = extractor.output_lengths(samples)
        frames = int(extractor.output_lengths(torch.tensor([wavs.shape[1]]))[0])
        valid = ~lengths_to_padding_mask(lengths, frames).to(targets.device)
        return targets[:, :frames], valid

    def fresh_like(self) -> "HubertModel":
        """A randomly initialised model of the same configuration (nothing here is frozen)."""
        return build_hubert_model(**self.config)


def build_hubert_model(
    encoder: str = "hubert_base_transformer",
    *,
    num_classes: int = 100,
    final_dim: int = 256,
    logit_temperature: float = 0.1,
    mask_prob: float = 0.8,
    mask_length: int = 10,
    min_masks: int = 2,
    feature_penalty_weight: float = 10.0,
    unmasked_weight: float = 0.0,
    extractor_channels: int = 512,
    feature_grad_mult: float = 0.1,
    input_dropout: float = 0.1,
    encoder_kind: str | None = None,
    **encoder_overrides,
) -> HubertModel:
    """Build a HuBERT model around an encoder preset or kind.

    Arguments
    ---------
    encoder : str
        Encoder preset (Study A: ``hubert_base_transformer``, ``conformer_s``,
        ``squeezeformer_xs``, ``sparseformer_dn_s``, ``sparseformer_sw_s``; or any other) or
        kind (``transformer``, ``conformer``, ``squeezeformer``).
    num_classes : int
        Clusters of the labels (100 for iteration 1, 500 for iteration 2).
    final_dim, logit_temperature : int, float
        The cosine head: projection width (256) and temperature (0.1).
    mask_prob, mask_length, min_masks : float, int, int
        Span masking as HuBERT defines it (0.8, 10, 2).
    feature_penalty_weight : float
        Weight of the CNN features' L2 penalty (10).
    unmasked_weight : float
        Weight of the loss on unmasked frames (0).
    extractor_channels : int
        Channels of the waveform CNN (512; fewer for a CPU-sized model).
    feature_grad_mult : float
        Gradient scale into the CNN (0.1).
    input_dropout : float
        Dropout on the projected CNN features (0.1).
    encoder_kind : str or None
        Swap the preset's layer type; None keeps it.
    **encoder_overrides
        Encoder keyword arguments replacing the preset's (``num_layers``, ``d_model``,
        ``nhead``, ``d_ffn``, ``mixer``, ``dropout``...); ``None`` keeps the preset's.

    Returns
    -------
    HubertModel
        With ``model.config`` holding these arguments.
    """
    config = {
        "encoder": encoder,
        "num_classes": num_classes,
        "final_dim": final_dim,
        "logit_temperature": logit_temperature,
        "mask_prob": mask_prob,
        "mask_length": mask_length,
        "min_masks": min_masks,
        "feature_penalty_weight": feature_penalty_weight,
        "unmasked_weight": unmasked_weight,
        "extractor_channels": extractor_channels,
        "feature_grad_mult": feature_grad_mult,
        "input_dropout": input_dropout,
        "encoder_kind": encoder_kind,
        **encoder_overrides,
    }
    enc_config = encoder_config(encoder, encoder_kind, **encoder_overrides)
    kind = enc_config.pop("kind")
    layers = build_encoder(kind, **enc_config)
    front_end = WaveformFrontEnd(
        d_model=layers.d_model,
        channels=extractor_channels,
        feature_grad_mult=feature_grad_mult,
        dropout=input_dropout,
    )
    return HubertModel(
        encoder=HubertEncoder(front_end=front_end, encoder=layers),
        num_classes=num_classes,
        final_dim=final_dim,
        logit_temperature=logit_temperature,
        mask_prob=mask_prob,
        mask_length=mask_length,
        min_masks=min_masks,
        feature_penalty_weight=feature_penalty_weight,
        unmasked_weight=unmasked_weight,
        config=config,
    )
