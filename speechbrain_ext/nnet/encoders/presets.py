"""The encoders of the two studies as named presets, with the studies' own figures.

Study A ("Attention or Convolution", arXiv 2311.02772, HuBERT framework):
``hubert_base_transformer``, ``conformer_s``, ``squeezeformer_xs``,
``sparseformer_dn_s``, ``sparseformer_sw_s``. Study B ("Linear Complexity
Attention Substitutes with BEST-RQ", arXiv 2409.02596):
``bestrq_{base,large}_{mhsa,fastformer,hypermixing,summarymixing,mamba}``,
Conformers with 8 heads, FFN 2048, GELU, pre-norm, whose widths were chosen to
keep the parameter count at ~95 M (base, 12 layers) / ~315 M (large, 24 layers).

Choices the studies leave open, made here:

- Conformer-S and Squeezeformer-XS use relative-position MHSA (Transformer-XL
  style, as in Gulati et al. and NeMo's Squeezeformer), Swish FFNs and a masked
  BatchNorm in the convolution module; the Transformer presets use HuBERT's
  convolutional positional embedding (``pos_conv``) and position-free MHSA.
- The BEST-RQ Conformers follow SpeechBrain's Conformer (the study's code):
  LayerNorm after the depthwise convolution, MHSA with ``position="relative"``
  (SpeechBrain's RelPosMHAXL).
- Every preset has dropout 0.1 (HuBERT's and SpeechBrain's BEST-RQ default);
  override ``dropout=0.0`` for inference-only uses.

:data:`STUDY_FIGURES` holds each preset's reference figures. Study A reports
the FP32 storage (MB) and FLOP (G) of the **whole** HuBERT model (its "FastConv"
waveform front end included, profiled with DeepSpeed) and no encoder-only
parameter count, so its numbers are shown for reference only. Study B reports
approximate parameter counts of the whole BEST-RQ model (front end, encoder,
prediction head); the encoder dominates them.

Example
-------
>>> from speechbrain_ext.nnet.encoders import list_presets, preset_config
>>> preset_config("conformer_s")["d_model"]
144
>>> STUDY_FIGURES["bestrq_large_mamba"]["params_m"]
315.0
"""

import torch

from speechbrain_ext.nnet.encoders import PRESETS, register_preset

STUDY_FIGURES: dict[str, dict] = {}
"""Preset name → the study's figures: ``study`` ("A" or "B"), ``system`` (the
study's name for it) and, for A, ``storage_mb``, ``gflop``, ``bit_storage_mb``
(BiT W1A1), ``wer`` (SUPERB ASR); for B, ``params_m`` (approximate, whole model)."""

STUDY_A = "A: Attention or Convolution (arXiv 2311.02772)"
STUDY_B = "B: Linear Complexity Attention Substitutes with BEST-RQ (arXiv 2409.02596)"


def _study_preset(name: str, *, figures: dict, kind: str, **config) -> None:
    register_preset(name, kind=kind, **config)
    STUDY_FIGURES[name] = figures


# ---- Study A: encoders inside HuBERT -------------------------------------------------------
_study_preset(
    "hubert_base_transformer",
    figures={
        "study": "A",
        "system": "Vanilla Transformer (HuBERT base)",
        "storage_mb": 184.42,
        "gflop": 110.54,
        "bit_storage_mb": 25.23,
        "wer": 6.89,
    },
    kind="transformer",
    num_layers=12,
    d_model=768,
    nhead=12,
    d_ffn=3072,
    mixer="mhsa",
    activation="gelu",
    pos_conv=True,
    dropout=0.1,
)


def _small_conv_attention() -> dict:
    """Conformer-S and Squeezeformer-XS share every setting but the layer type (Study A)."""
    return dict(
        num_layers=16,
        d_model=144,
        nhead=4,
        d_ffn=576,
        kernel_size=31,
        mixer="mhsa",
        mixer_options={"position": "relative"},
        activation="swish",
        conv_norm="batchnorm",
        dropout=0.1,
    )


_study_preset(
    "conformer_s",
    figures={
        "study": "A",
        "system": "Conformer-S",
        "storage_mb": 131.87,
        "gflop": 22.10,
        "bit_storage_mb": 12.88,
        "wer": 8.56,
    },
    kind="conformer",
    **_small_conv_attention(),
)
_study_preset(
    "squeezeformer_xs",
    figures={
        "study": "A",
        "system": "Squeezeformer-XS",
        "storage_mb": 132.04,
        "gflop": 18.31,
        "bit_storage_mb": 13.05,
        "wer": 8.96,
    },
    kind="squeezeformer",
    **_small_conv_attention(),
)
_study_preset(
    "sparseformer_dn_s",
    figures={
        "study": "A",
        "system": "Sparseformer-DN-S (deep-narrow)",
        "storage_mb": 60.81,
        "gflop": 26.05,
        "bit_storage_mb": 12.10,
        "wer": 8.44,
    },
    kind="transformer",
    num_layers=16,
    d_model=256,
    nhead=4,
    d_ffn=1024,
    mixer="sparse",
    activation="gelu",
    pos_conv=True,
    dropout=0.1,
)
_study_preset(
    "sparseformer_sw_s",
    figures={
        "study": "A",
        "system": "Sparseformer-SW-S (shallow-wide)",
        "storage_mb": 117.18,
        "gflop": 40.09,
        "bit_storage_mb": 19.71,
        "wer": 7.88,
    },
    kind="transformer",
    num_layers=8,
    d_model=512,
    nhead=4,
    d_ffn=2048,
    mixer="sparse",
    activation="gelu",
    pos_conv=True,
    dropout=0.1,
)

# ---- Study B: BEST-RQ Conformers with linear-complexity mixers -------------------------------
BESTRQ_WIDTHS: dict[str, tuple[int, int]] = {
    "mhsa": (576, 848),
    "hypermixing": (672, 1048),
    "fastformer": (616, 920),
    "summarymixing": (632, 976),
    "mamba": (474, 678),
}
"""Mixer → (d_model of the base, d_model of the large model), Study B's table."""

BESTRQ_MIXER_OPTIONS: dict[str, dict] = {
    # SpeechBrain's RelPosMHAXL, as in the study.
    "mhsa": {"position": "relative"},
    # SpeechBrain's Conformer sets the hypernetworks' width to the FFN size.
    "hypermixing": {"hypernet_size": 2048},
    # The public SummaryMixing code splits its projections into nhead blocks.
    "summarymixing": {"groups": 8},
}

for _mixer, _widths in BESTRQ_WIDTHS.items():
    for _size, _layers, _width, _params in zip(("base", "large"), (12, 24), _widths, (95.0, 315.0)):
        _study_preset(
            f"bestrq_{_size}_{_mixer}",
            figures={"study": "B", "system": f"BEST-RQ {_size}, {_mixer}", "params_m": _params},
            kind="conformer",
            num_layers=_layers,
            d_model=_width,
            nhead=8,
            d_ffn=2048,
            kernel_size=31,
            mixer=_mixer,
            mixer_options=dict(BESTRQ_MIXER_OPTIONS.get(_mixer, {})),
            activation="gelu",
            conv_norm="layernorm",
            dropout=0.1,
        )


BESTRQ_SCALES = ("base", "large")


def bestrq_preset(scale: str, mixer: str) -> tuple[str, dict]:
    """The encoder preset of a BEST-RQ model at ``scale`` with ``mixer``, and its overrides.

    The study's five mixers have their own parameter-matched presets. Any other registered
    mixer (``performer``, ``sparse``, ``summarymixing_lite``...) runs in the MHSA preset's
    Conformer, at the MHSA widths, with the mixer's default options.

    Arguments
    ---------
    scale : str
        ``"base"`` or ``"large"``.
    mixer : str
        A registered token mixer.

    Returns
    -------
    preset : str
        The preset name.
    overrides : dict
        Keyword arguments to apply on top of the preset (empty for the study's mixers).

    Example
    -------
    >>> bestrq_preset("base", "mamba")
    ('bestrq_base_mamba', {})
    >>> bestrq_preset("large", "performer")
    ('bestrq_large_mhsa', {'mixer': 'performer', 'mixer_options': {}})
    >>> bestrq_preset("huge", "mamba")
    Traceback (most recent call last):
    ...
    ValueError: BEST-RQ scale must be one of base, large; got 'huge'
    """
    from speechbrain_ext.nnet.mixers import MIXERS

    if scale not in BESTRQ_SCALES:
        raise ValueError(f"BEST-RQ scale must be one of {', '.join(BESTRQ_SCALES)}; got {scale!r}")
    preset = f"bestrq_{scale}_{mixer}"
    if preset in PRESETS:
        return preset, {}
    MIXERS.get(mixer)  # an unknown mixer: KeyError listing the registered ones
    return f"bestrq_{scale}_mhsa", {"mixer": mixer, "mixer_options": {}}


def count_parameters(kind_or_preset: str, **overrides) -> int:
    """Number of parameters of an encoder, built on the meta device (no memory, instant).

    Falls back to a CPU build if some layer cannot be built on the meta device.

    Arguments
    ---------
    kind_or_preset : str
        Encoder kind or preset name.
    **overrides
        As for :func:`~speechbrain_ext.nnet.encoders.build_encoder`.

    Returns
    -------
    int
        Total number of parameters (buffers such as BatchNorm statistics excluded).

    Example
    -------
    >>> from speechbrain_ext.nnet.encoders import build_encoder
    >>> config = dict(num_layers=1, d_model=8, nhead=2, mixer="fastformer")
    >>> built = build_encoder("transformer", **config)
    >>> count_parameters("transformer", **config) == sum(p.numel() for p in built.parameters())
    True
    """
    from speechbrain_ext.nnet.encoders import build_encoder

    try:
        encoder = build_encoder(kind_or_preset, device="meta", **overrides)
    except (NotImplementedError, RuntimeError):
        encoder = build_encoder(kind_or_preset, **overrides)
    return sum(parameter.numel() for parameter in encoder.parameters())


def bestrq_extra_parameters(d_model: int, *, codebook_size: int = 8192) -> int:
    """Estimated parameters of a BEST-RQ model outside its encoder (Study B's recipe).

    SpeechBrain's BEST-RQ: a convolutional front end of two 3×3 blocks (1 → 128 → 32
    channels, 38,176 parameters without norms), the 640 → ``d_model`` input projection
    and the linear prediction head ``d_model`` → ``codebook_size`` logits. Added to an
    encoder's count, it estimates the whole model that Study B's ~95 M / ~315 M describe.

    Arguments
    ---------
    d_model : int
        Encoder width.
    codebook_size : int
        Number of codewords predicted by the head.

    Returns
    -------
    int
        The estimate.

    Example
    -------
    >>> bestrq_extra_parameters(576)
    5134176
    """
    front_end = (1 * 9 + 1) * 128 + (128 * 9 + 1) * 32
    projection = 640 * d_model + d_model
    head = d_model * codebook_size + codebook_size
    return front_end + projection + head


def _study_figure_text(figures: dict) -> str:
    if figures["study"] == "A":
        return (
            f"{figures['storage_mb']:.2f} MB, {figures['gflop']:.2f} GFLOP "
            f"(BiT {figures['bit_storage_mb']:.2f} MB)"
        )
    return f"~{figures['params_m']:.0f} M params"


def squeezeformer_xs_with_front_end_parameters(n_input: int = 80) -> int:
    """Parameters of ``squeezeformer_xs`` plus its ×4 subsampling front end for ``n_input`` bins.

    Kim et al. (2022) give 9.0 M for Squeezeformer-XS (front end and encoder).

    Arguments
    ---------
    n_input : int
        Filterbank bins of the front end's input.

    Returns
    -------
    int
        The parameter count.
    """
    from speechbrain_ext.nnet.convolution import DepthwiseSeparableSubsampling
    from speechbrain_ext.nnet.encoders import preset_config

    d_model = preset_config("squeezeformer_xs")["d_model"]
    with torch.device("meta"):
        front_end = DepthwiseSeparableSubsampling(n_input=n_input, d_model=d_model)
    return count_parameters("squeezeformer_xs") + sum(p.numel() for p in front_end.parameters())


def _squeezeformer_xs_note() -> str:
    try:
        total = squeezeformer_xs_with_front_end_parameters()
    except KeyError:
        return ""
    return (
        f"With that front end for 80 filterbanks, `squeezeformer_xs` has {total / 1e6:.2f} M "
        "parameters; Kim et al. (2022) give 9.0 M for Squeezeformer-XS."
    )


def presets_markdown() -> str:
    """Every preset's parameter count beside the study's figures, as a Markdown document.

    Returns
    -------
    str
        A title, a table (one row per preset) and notes on what each study counts.
    """
    from speechbrain_ext.nnet.encoders import list_presets, preset_config

    rows = [
        "| preset | study system | kind | layers / d / heads | mixer | encoder params (M) "
        "| encoder FP32 (MB) | whole model, est. (M) | study figure (whole model) "
        "| est. / study |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in list_presets():
        config = preset_config(name)
        figures = STUDY_FIGURES.get(name)
        shape = f"{config['num_layers']} / {config['d_model']} / {config['nhead']}"
        mixer = config.get("mixer", "mhsa")
        options = config.get("mixer_options") or {}
        if options:
            mixer += " (" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"
        whole = ratio = "—"
        try:
            params = count_parameters(name)
        except KeyError as error:  # a mixer that is not registered (yet)
            params_text = mb_text = f"n/a ({error.args[0].split(';')[0]})"
        else:
            params_text = f"{params / 1e6:.2f}"
            mb_text = f"{params * 4 / 1e6:.2f}"
            if figures and "params_m" in figures:
                total = params + bestrq_extra_parameters(config["d_model"])
                whole = f"{total / 1e6:.2f}"
                ratio = f"{total / 1e6 / figures['params_m']:.2f}"
        system = figures["system"] if figures else "—"
        figure = _study_figure_text(figures) if figures else "—"
        rows.append(
            f"| `{name}` | {system} | {config['kind']} | {shape} | {mixer} | {params_text} "
            f"| {mb_text} | {whole} | {figure} | {ratio} |"
        )
    notes = [
        "# Encoder presets",
        "",
        "Generated by `python -m speechbrain_ext.nnet.encoders --markdown docs/presets.md`; "
        "do not edit by hand. Parameter counts are of the encoder alone (the module "
        "`build_encoder(preset)` returns), built on the meta device; 1 MB = 10^6 bytes.",
        "",
        *rows,
        "",
        "## What the studies count",
        "",
        f"- **Study {STUDY_A}** reports FP32 storage and FLOP of the whole HuBERT model "
        '(its "FastConv" waveform front end included, profiled with DeepSpeed) and no '
        "encoder-only parameter count. Its storage figures are not params × 4 bytes of any "
        "encoder of the stated shape (e.g. 131.87 MB would be 33 M FP32 parameters for a "
        "16-layer, 144-wide Conformer of ~8 M), so they are shown for reference, not compared. "
        "The HuBERT-base Transformer preset is instead checked against the real HuBERT-base "
        "encoder (torchaudio's `hubert_base().encoder.transformer`, 89,775,488 parameters).",
        f"- **Study {STUDY_B}** gives approximate totals of the whole BEST-RQ model "
        "(~95 M base, ~315 M large): the encoder plus a small convolutional front end, "
        "the 640 → d_model input projection and the prediction head (d_model × 8192 "
        'codebook logits). "Whole model, est." adds these to the encoder count '
        "(`bestrq_extra_parameters`); the test suite holds that estimate within 3 % of the "
        "study's figure for every mixer: MHSA is SpeechBrain's RelPosMHAXL, HyperMixing's "
        "hypernetworks are as wide as the FFN, and SummaryMixing's projections are split into "
        "nhead blocks, as in the implementations the study used.",
        "- Squeezeformer: the temporal U-Net layers (time reduction and recovery) are counted; "
        "the ×4 depthwise-separable subsampling front end is a separate module "
        f"(`DepthwiseSeparableSubsampling`) and is not. {_squeezeformer_xs_note()}",
        "",
    ]
    return "\n".join(notes)
