"""Our trained SSL encoders behind s3prl's upstream contract (SUPERB's runner).

s3prl (0.4.x) calls an upstream as ``upstream(wavs)`` with a list of 1-D 16 kHz waveforms of
different lengths and expects a dict whose ``"hidden_states"`` is a list of (batch, frames,
dim) tensors, all layers the same shape, the front end's output first; its ``Featurizer``
learns the weighted sum and asks ``upstream.get_downsample_rates(key)`` for the samples per
frame. :class:`SSLUpstreamExpert` wraps :func:`speechbrain_ext.load_ssl_encoder` that way.

Registering it with s3prl
-------------------------
- **As a named upstream** (what s3prl's own upstreams do): create a folder
  ``s3prl/upstream/speechbrain_ext/`` with a ``hubconf.py`` holding
  ``from speechbrain_ext.superb.s3prl_upstream import speechbrain_ext_ssl``, add
  ``from s3prl.upstream.speechbrain_ext.hubconf import *`` to ``s3prl/hub.py``, then run
  ``python run_downstream.py -m train -u speechbrain_ext_ssl -k <our run folder> -d <task>``
  (``-k`` reaches the entry as ``ckpt``).
- **Through torch.hub**, without touching s3prl: ``torch.hub.load(<folder of
  speechbrain_ext/superb/hubconf.py>, "speechbrain_ext_ssl", <run folder>, source="local")``.
- **As s3prl's ``customized_upstream``**: make ``s3prl/upstream/example/expert.py``'s
  ``UpstreamExpert`` this class (``-u customized_upstream -k <run folder>``).

Example
-------
>>> import torch
>>> from speechbrain_ext.superb.s3prl_upstream import SSLUpstreamExpert
>>> class Toy(torch.nn.Module):  # the contract of load_ssl_encoder's modules
...     num_layers, hidden_size, downsample_rate = 2, 3, 160
...     def forward(self, wavs, wav_lens):
...         x = wavs[:, : wavs.shape[1] // 160 * 160].reshape(wavs.shape[0], -1, 160)[..., :3]
...         return [x, 2 * x]
>>> upstream = SSLUpstreamExpert(encoder=Toy())
>>> out = upstream([torch.randn(1600), torch.randn(800)])
>>> len(out["hidden_states"]), tuple(out["last_hidden_state"].shape)
(2, (2, 10, 3))
>>> upstream.get_downsample_rates("hidden_states")
160
"""

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

SAMPLE_RATE = 16000  # s3prl's upstreams all take 16 kHz audio


class SSLUpstreamExpert(nn.Module):
    """A BEST-RQ or HuBERT encoder of this project as an s3prl ``UpstreamExpert``.

    Arguments
    ---------
    ckpt : str or Path, optional
        What :func:`speechbrain_ext.load_ssl_encoder` reads: a recipe output folder, a
        checkpoint inside it or its model json (s3prl's ``-k``).
    model_config : str or Path, optional
        Used as ``ckpt`` when that is not given (s3prl's ``-g``).
    encoder : nn.Module, optional
        An already built encoder (``forward(wavs, wav_lens) -> list of (batch, frames, dim)``
        with a ``downsample_rate`` attribute) instead of a path.
    pretrained : bool
        False gives the same configuration with random weights.
    exact_padding : bool
        True (default) encodes waveforms of equal length together and each other length on
        its own, then zero-pads the outputs: every utterance's valid frames are what it gets
        alone, and the padded frames are zeros. False runs one zero-padded batch (faster): the
        valid frames are the same (both frameworks' encoders are padding-exact, tested), the
        padded ones whatever the encoder leaves there.
    """

    def __init__(
        self,
        ckpt=None,
        model_config=None,
        *,
        encoder: nn.Module | None = None,
        pretrained: bool = True,
        exact_padding: bool = True,
        **kwargs,
    ):
        super().__init__()
        self.exact_padding = exact_padding
        if encoder is None:
            source = ckpt if ckpt is not None else model_config
            if source is None:
                raise ValueError("give ckpt (a trained run folder or checkpoint) or an encoder")
            from speechbrain_ext import load_ssl_encoder

            encoder = load_ssl_encoder(source, pretrained=pretrained)
        if not hasattr(encoder, "downsample_rate"):
            raise TypeError(f"{type(encoder).__name__} has no downsample_rate attribute")
        self.encoder = encoder.eval()
        self.name = f"[speechbrain_ext {type(encoder).__name__}]"

    @property
    def num_layers(self) -> int:
        """Hidden states returned (front end + encoder layers)."""
        return int(self.encoder.num_layers)

    def get_downsample_rates(self, key: str) -> int:
        """Waveform samples per output frame, the same for every key."""
        return int(self.encoder.downsample_rate)

    def forward(self, wavs: Sequence[torch.Tensor]) -> dict:
        """List of 1-D waveforms → ``{"hidden_states": [...], "last_hidden_state": ...}``.

        Outputs are zero-padded to the longest utterance's frames. With ``exact_padding``
        (default), waveforms of equal length share a forward pass and the others run alone;
        without it, one zero-padded batch with relative lengths (``wav_lens``) is encoded.
        """
        if not wavs:
            raise ValueError("got an empty batch")
        for wav in wavs:
            if wav.dim() != 1:
                raise ValueError(f"each waveform must be 1-D, got shape {tuple(wav.shape)}")
        if not self.exact_padding:
            hidden = self._encode(wavs)
            return {"hidden_states": hidden, "last_hidden_state": hidden[-1]}
        groups = {}
        for index, wav in enumerate(wavs):
            groups.setdefault(wav.shape[0], []).append(index)
        per_utt = [None] * len(wavs)
        for indices in groups.values():
            outputs = self._encode([wavs[i] for i in indices])  # layers of (group, frames, dim)
            for row, index in enumerate(indices):
                per_utt[index] = [out[row] for out in outputs]
        hidden = [
            pad_sequence([utt[layer] for utt in per_utt], batch_first=True)
            for layer in range(len(per_utt[0]))
        ]  # each (batch, frames, dim)
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1]}

    def _encode(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        lengths = torch.tensor([wav.shape[0] for wav in wavs], dtype=torch.float32)
        padded = pad_sequence([wav.float() for wav in wavs], batch_first=True)
        wav_lens = (lengths / lengths.max()).to(padded.device)
        return list(self.encoder(padded, wav_lens))  # each (batch, frames, dim)


def speechbrain_ext_ssl(ckpt=None, model_config=None, *args, **kwargs) -> SSLUpstreamExpert:
    """s3prl / torch.hub entry: ``speechbrain_ext_ssl(<run folder>)`` (see the module docstring)."""
    return SSLUpstreamExpert(ckpt, model_config, *args, **kwargs)
