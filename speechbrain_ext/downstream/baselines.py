"""Encoders for the benchmark: a self-supervised model, and the baselines it is compared with.

- :class:`FbankEncoder`: SpeechBrain log-mel filterbanks (no learning) behind the interface of
  ``load_ssl_encoder``'s module, so every probe can be trained on plain features.
- :func:`load_mp3s_encoder`: ``"fbank"`` (``fbank_stack`` consecutive 10 ms frames in one: the
  MP3S yamls stack 4, a 40 ms frame at the encoders' own rate, so that a probe sees sequences
  as long as an encoder gives it; SUPERB keeps its 10 ms FBANK) or a model folder / checkpoint;
  with
  ``pretrained=False`` the same configuration with random weights (the "random encoder"
  baseline).

Example
-------
>>> import torch
>>> encoder = FbankEncoder()
>>> layers = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
>>> len(layers), layers[0].shape
(1, torch.Size([2, 101, 80]))
>>> encoder.num_layers, encoder.hidden_size, encoder.downsample_rate
(1, 80, 160)
>>> stacked = FbankEncoder(stack=4)
>>> stacked(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))[0].shape  # ceil(101 / 4) frames
torch.Size([2, 26, 320])
>>> stacked.hidden_size, stacked.downsample_rate
(320, 640)
"""

import hashlib

import torch
from speechbrain.lobes.features import Fbank
from torch import nn

from speechbrain_ext.nnet.masking import wav_lens_to_padding_mask
from speechbrain_ext.ssl.bestrq import stack_frames

FBANK = "fbank"


class FbankEncoder(nn.Module):
    """Log-mel filterbank features as a one-layer "encoder" (10 ms hop, 25 ms window).

    With ``stack = k`` every ``k`` consecutive (normalised) frames are concatenated into one
    frame of ``k · n_mels`` channels at ``k`` times the hop, as the ``stack`` front end of the
    BEST-RQ encoders does: the same information at the encoders' frame rate. The last frame is
    completed with zeros; padded frames stay zero.

    Arguments
    ---------
    n_mels : int
        Number of mel channels (the ``hidden_size``).
    sample_rate : int
        Audio sample rate.
    hop_length : int
        Hop in milliseconds; ``downsample_rate = sample_rate * hop_length / 1000``.
    normalize : bool
        Mean and variance normalisation per utterance and channel over the valid frames
        (padding does not change the statistics).
    stack : int
        Consecutive frames concatenated into one (1: none).
    """

    def __init__(
        self,
        *,
        n_mels: int = 80,
        sample_rate: int = 16000,
        hop_length: int = 10,
        normalize: bool = True,
        stack: int = 1,
    ):
        super().__init__()
        if not isinstance(stack, int) or stack < 1:
            raise ValueError(f"FbankEncoder: stack must be a positive int, got {stack!r}")
        self.fbank = Fbank(n_mels=n_mels, sample_rate=sample_rate, hop_length=hop_length)
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.normalize = normalize
        self.stack = stack
        self.num_layers = 1
        self.hidden_size = n_mels * stack
        self.downsample_rate = sample_rate * hop_length // 1000 * stack

    def extra_repr(self) -> str:
        """The configuration, part of ``repr`` (and so of the feature-cache checksum)."""
        return (
            f"n_mels={self.n_mels}, sample_rate={self.sample_rate}, "
            f"hop_length={self.hop_length}, normalize={self.normalize}"
            + (f", stack={self.stack}" if self.stack > 1 else "")  # stack 1: the old checksum
        )

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> list:
        """Features of a batch of audio.

        Arguments
        ---------
        wavs : torch.Tensor
            (batch, samples) audio.
        wav_lens : torch.Tensor, optional
            (batch,) relative lengths in (0, 1].

        Returns
        -------
        list of torch.Tensor
            One (batch, frames, n_mels) tensor.
        """
        if wavs.dim() != 2:
            raise ValueError(f"wavs must be (batch, samples), got {tuple(wavs.shape)}")
        feats = self.fbank(wavs)  # (batch, frames, n_mels)
        if self.normalize:
            if wav_lens is None:
                wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
            pad = wav_lens_to_padding_mask(wav_lens.to(feats.device), feats.shape[1])
            valid = (~pad).unsqueeze(-1).to(feats.dtype)  # (batch, frames, 1)
            count = valid.sum(dim=1, keepdim=True)
            mean = (feats * valid).sum(dim=1, keepdim=True) / count
            var = (((feats - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
            feats = (feats - mean) / torch.sqrt(var + 1e-5) * valid
        if self.stack > 1:
            feats = stack_frames(feats, self.stack)
        return [feats]


def encoder_fingerprint(spec, *, pretrained: bool = True) -> dict:
    """What decides the features of the encoder ``spec``, for a run folder's record: the
    SHA-256 of the trained model's files (its configuration, its quantization spec if any, and
    its weights unless ``pretrained=False``: the random baseline depends on the configuration
    and the seed only); ``{"encoder": "fbank"}`` for the filterbank baseline (whose yaml keys
    decide the rest).

    Example
    -------
    >>> encoder_fingerprint("fbank")
    {'encoder': 'fbank'}
    """
    if str(spec) == FBANK:
        return {"encoder": FBANK}
    from speechbrain_ext.ssl.export import model_files

    digests = {}
    for role, path in model_files(spec, pretrained=pretrained).items():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[role] = digest.hexdigest()
    return {"encoder": "ssl", "pretrained": bool(pretrained), "sha256": digests}


def load_mp3s_encoder(
    spec, *, pretrained: bool = True, seed: int = 1234, fbank_stack: int = 1
) -> nn.Module:
    """The encoder to probe, from a yaml/CLI value.

    Arguments
    ---------
    spec : str or Path
        ``"fbank"`` for :class:`FbankEncoder`, otherwise what ``load_ssl_encoder`` accepts
        (a trained model's output folder, or a checkpoint/yaml file inside it).
    pretrained : bool
        ``False`` builds the same configuration with random weights. Ignored for ``"fbank"``,
        which has no weights.
    seed : int
        Seed of the random initialisation when ``pretrained=False``, so that the random
        baseline (and its feature cache) is the same on every run.
    fbank_stack : int
        ``stack`` of the :class:`FbankEncoder` for ``"fbank"`` (the yamls' ``fbank_stack``).

    Example
    -------
    >>> load_mp3s_encoder("fbank").hidden_size
    80
    >>> load_mp3s_encoder("fbank", fbank_stack=4).hidden_size  # 4 frames of 80 mels
    320
    >>> load_mp3s_encoder("")
    Traceback (most recent call last):
    ...
    ValueError: encoder: give 'fbank' or the path of a trained model
    """
    if spec is None or str(spec).strip() == "":
        raise ValueError("encoder: give 'fbank' or the path of a trained model")
    if str(spec) == FBANK:
        return FbankEncoder(stack=fbank_stack)
    from speechbrain_ext import load_ssl_encoder

    if pretrained:
        return load_ssl_encoder(spec, pretrained=True)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return load_ssl_encoder(spec, pretrained=False)
    finally:
        torch.random.set_rng_state(state)
