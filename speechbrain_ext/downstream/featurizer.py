"""Learned softmax-weighted sum of an encoder's layers (the MP3S / SUPERB featurizer).

Unlike SpeechBrain's MP3S ``WeightedSSLModel``, the hidden states are not detached: with
``freeze=False`` the gradient of the probe's loss reaches the encoder, so the same module serves
frozen probing and fine-tuning. With ``freeze=True`` the encoder runs in eval mode under
``torch.no_grad`` and only the layer weights (and the probe) learn.

Example
-------
>>> import torch
>>> wsum = WeightedLayerSum(num_layers=3)
>>> layers = [torch.full((2, 5, 4), float(i)) for i in range(3)]
>>> wsum(layers, normalize=False)[0, 0].tolist()  # uniform weights at start: mean of 0, 1, 2
[1.0, 1.0, 1.0, 1.0]
>>> wsum.layer_weights()
[0.3333..., 0.3333..., 0.3333...]
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.masking import wav_lens_to_padding_mask


class NonFiniteFeaturesError(ValueError):
    """An encoder gave NaN or inf features: nothing may be cached or scored from them."""


def check_finite_features(stacked: torch.Tensor, wav_lens=None, *, source: str) -> None:
    """Raise :class:`NonFiniteFeaturesError` if a valid frame of ``stacked`` is NaN or inf.

    Arguments
    ---------
    stacked : torch.Tensor
        (batch, frames, layers, dim) features.
    wav_lens : torch.Tensor, optional
        (batch,) relative lengths; frames past them (padding) are not checked.
    source : str
        What produced the features, for the message (an encoder class, a cache file).

    Example
    -------
    >>> feats = torch.zeros(2, 4, 1, 3)
    >>> feats[1, 3] = float("nan")  # a padded frame of utterance 1: not checked
    >>> check_finite_features(feats, torch.tensor([1.0, 0.5]), source="demo")
    >>> feats[0, 0, 0, 0] = float("inf")
    >>> check_finite_features(feats, torch.tensor([1.0, 0.5]), source="demo")
    Traceback (most recent call last):
    ...
    speechbrain_ext.downstream.featurizer.NonFiniteFeaturesError: demo gave non-finite ...
    """
    finite = torch.isfinite(stacked).all(dim=-1)  # (batch, frames, layers)
    if wav_lens is not None:
        pad = wav_lens_to_padding_mask(wav_lens.to(stacked.device), stacked.shape[1])
        finite = finite | pad.unsqueeze(-1)
    if bool(finite.all()):
        return
    layers = sorted(set((~finite).nonzero()[:, 2].tolist()))
    utterances = sorted(set((~finite).nonzero()[:, 0].tolist()))
    raise NonFiniteFeaturesError(
        f"{source} gave non-finite (NaN or inf) features in layer(s) {layers} of batch "
        f"item(s) {utterances}: the encoder's weights or its input are broken; refusing to "
        "cache or score them"
    )


def stack_layers(layers) -> torch.Tensor:
    """Stack an encoder's list of layer outputs into one (batch, time, layers, dim) tensor.

    A tensor that is already stacked (4-D) is returned as is. Layers of different shapes raise
    ``ValueError`` naming them.

    Example
    -------
    >>> stack_layers([torch.zeros(2, 7, 3), torch.ones(2, 7, 3)]).shape
    torch.Size([2, 7, 2, 3])
    >>> stack_layers([torch.zeros(2, 7, 3), torch.ones(2, 6, 3)])
    Traceback (most recent call last):
    ...
    ValueError: encoder layers differ in shape: [(2, 7, 3), (2, 6, 3)]; ...
    """
    if isinstance(layers, torch.Tensor):
        if layers.dim() != 4:
            raise ValueError(
                f"stacked layers must be (batch, time, layers, dim), got {tuple(layers.shape)}"
            )
        return layers
    layers = list(layers)
    if not layers:
        raise ValueError("the encoder returned no layers")
    shapes = [tuple(layer.shape) for layer in layers]
    if len(set(shapes)) != 1 or len(shapes[0]) != 3:
        raise ValueError(
            f"encoder layers differ in shape: {shapes}; every layer must be "
            "(batch, frames, hidden_size) for a weighted sum"
        )
    return torch.stack(layers, dim=2)  # (batch, time, layers, dim)


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum of ``num_layers`` hidden states.

    Arguments
    ---------
    num_layers : int
        Number of layers to mix (the encoder's ``num_layers``).
    """

    def __init__(self, *, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = num_layers
        self.weights = nn.Parameter(torch.zeros(num_layers))  # softmax → uniform at start

    def normalized_weights(self) -> torch.Tensor:
        """The softmax of the raw weights, (num_layers,), summing to one."""
        return torch.softmax(self.weights, dim=0)

    def layer_weights(self) -> list[float]:
        """The current normalised weights as plain floats (for result tables)."""
        return [float(w) for w in self.normalized_weights().detach().cpu()]

    def forward(self, layers, *, normalize: bool = True) -> torch.Tensor:
        """Mix the layers.

        Arguments
        ---------
        layers : list of torch.Tensor or torch.Tensor
            ``num_layers`` tensors (batch, time, dim), or one (batch, time, layers, dim) tensor.
        normalize : bool
            Layer-normalise each hidden state (no learned parameters) before mixing, as
            s3prl and MP3S do, so that layers of different scales get comparable weights.

        Returns
        -------
        torch.Tensor
            (batch, time, dim).
        """
        stacked = stack_layers(layers)  # (batch, time, layers, dim)
        if stacked.shape[2] != self.num_layers:
            raise ValueError(
                f"expected {self.num_layers} layers, got {stacked.shape[2]} "
                "(was the cache written by another encoder?)"
            )
        if normalize:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = self.normalized_weights().to(stacked.dtype)
        return torch.einsum("btld,l->btd", stacked, weights)


class SSLFeaturizer(nn.Module):
    """An encoder and its learned layer weighting, frozen or fine-tuned.

    Arguments
    ---------
    encoder : torch.nn.Module
        A module as returned by ``load_ssl_encoder`` (or :class:`FbankEncoder`):
        ``forward(wavs, wav_lens) -> list of (batch, frames, hidden_size)`` and attributes
        ``num_layers``, ``hidden_size``, ``downsample_rate``.
    freeze : bool
        ``True``: the encoder runs in eval mode under ``no_grad`` and its parameters never
        train. ``False``: gradients flow into the encoder (fine-tuning).
    normalize : bool
        Layer-normalise every hidden state before the weighted sum.

    Example
    -------
    >>> from speechbrain_ext.downstream.baselines import FbankEncoder
    >>> featurizer = SSLFeaturizer(encoder=FbankEncoder())
    >>> feats = featurizer(torch.randn(2, 3200), torch.tensor([1.0, 0.5]))
    >>> feats.shape
    torch.Size([2, 21, 80])
    """

    def __init__(self, *, encoder: nn.Module, freeze: bool = True, normalize: bool = True):
        super().__init__()
        for attribute in ("num_layers", "hidden_size", "downsample_rate"):
            if not hasattr(encoder, attribute):
                raise TypeError(
                    f"{type(encoder).__name__} has no attribute {attribute!r}; an MP3S encoder "
                    "needs num_layers, hidden_size and downsample_rate (see load_ssl_encoder)"
                )
        self.encoder = encoder
        self.freeze = freeze
        self.normalize = normalize
        self.num_layers = int(encoder.num_layers)
        self.hidden_size = int(encoder.hidden_size)
        self.downsample_rate = int(encoder.downsample_rate)
        self.weighted_sum = WeightedLayerSum(num_layers=self.num_layers)
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True):
        """Switch train/eval mode; a frozen encoder always stays in eval mode."""
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def encode_layers(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """Every layer of the encoder, (batch, frames, layers, hidden_size).

        Runs under ``no_grad`` when the featurizer is frozen. Non-finite features on valid frames
        raise :class:`NonFiniteFeaturesError` (:func:`check_finite_features`).
        """
        if self.freeze:
            with torch.no_grad():
                layers = self.encoder(wavs, wav_lens)
        else:
            layers = self.encoder(wavs, wav_lens)
        stacked = stack_layers(layers)
        check_finite_features(stacked, wav_lens, source=type(self.encoder).__name__)
        if stacked.shape[2] != self.num_layers or stacked.shape[3] != self.hidden_size:
            raise ValueError(
                f"{type(self.encoder).__name__} returned {stacked.shape[2]} layers of size "
                f"{stacked.shape[3]} but declares num_layers={self.num_layers}, "
                f"hidden_size={self.hidden_size}"
            )
        return stacked

    def mix(self, layers) -> torch.Tensor:
        """The weighted sum of already computed (e.g. cached) layers, (batch, time, dim)."""
        return self.weighted_sum(layers, normalize=self.normalize)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the encoder's layers for a batch of audio (batch, samples)."""
        return self.mix(self.encode_layers(wavs, wav_lens))

    def layer_weights(self) -> list[float]:
        """The learned normalised layer weights."""
        return self.weighted_sum.layer_weights()
