"""Layer features cached on disk, so that probes train without re-running a frozen encoder.

One file per utterance, ``<folder>/<encoder checksum>/<quoted utterance id>.<audio key>.pt``,
holding every layer of that utterance as a (frames, layers, hidden_size) tensor (float16 by
default). The checksum covers the encoder's class, configuration and weights, so a retrained or
random encoder never reads another one's features; the audio key (a hash of the audio file's
path) keeps two corpora whose utterance ids coincide (the built-in LibriSpeech stand-in uses
LibriSpeech-style ids) apart.

A probe reads every utterance once per epoch, and unpickling a small file costs more than the
probe's step (``torch.load`` was half of a linear probe's run), so :meth:`LayerFeatureCache.load`
keeps what it read in memory, in the storage type, up to ``memory_mb`` per cache; what does
not fit is read from disk each time.

Example
-------
>>> import torch
>>> from speechbrain_ext.downstream.baselines import FbankEncoder
>>> cache = LayerFeatureCache(getfixture("tmp_path"), key=encoder_checksum(FbankEncoder()))
>>> cache.has("utt/1", "/data/a.wav")
False
>>> cache.save("utt/1", "/data/a.wav", torch.ones(5, 1, 80))
>>> cache.has("utt/1", "/data/a.wav"), cache.load("utt/1", "/data/a.wav").shape
(True, torch.Size([5, 1, 80]))
>>> cache.has("utt/1", "/other/corpus/a.wav")
False
"""

import hashlib
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import torch
from speechbrain.dataio.dataio import read_audio
from torch import nn

from speechbrain_ext.downstream.featurizer import NonFiniteFeaturesError
from speechbrain_ext.nnet.masking import wav_lens_to_lengths

logger = logging.getLogger(__name__)


def encoder_checksum(module: nn.Module, *, length: int = 16) -> str:
    """A hex digest of a module's class, ``repr`` (configuration) and state (weights, buffers).

    Example
    -------
    >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> encoder_checksum(a) == encoder_checksum(a), encoder_checksum(a) == encoder_checksum(b)
    (True, False)
    """
    digest = hashlib.sha256()
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    digest.update(repr(module).encode())
    for attribute in ("num_layers", "hidden_size", "downsample_rate"):
        digest.update(f"{attribute}={getattr(module, attribute, None)}".encode())
    for name, value in module.state_dict().items():
        _hash_value(digest, name, value)
    return digest.hexdigest()[:length]


def _hash_value(digest, name: str, value) -> None:
    # state_dict values are tensors, or any object a module's get_extra_state returns.
    if torch.is_tensor(value):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            _hash_value(digest, f"{name}.{key}", value[key])
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _hash_value(digest, f"{name}.{index}", item)
    else:
        digest.update(f"{name}={value!r}".encode())


@dataclass
class CacheStats:
    """Outcome of :meth:`LayerFeatureCache.fill`: utterances found and computed."""

    hits: int = 0
    misses: int = 0


class LayerFeatureCache:
    """Per-utterance layer features of one encoder, on disk.

    Arguments
    ---------
    folder : str or Path
        Root folder shared by every encoder (one sub-folder per ``key``).
    key : str
        The encoder's identity, normally :func:`encoder_checksum`.
    dtype : torch.dtype
        Storage type; features are returned as float32.
    memory_mb : float
        How much of what :meth:`load` read stays in memory (in the storage type) for the next
        reads; 0 reads every time from disk.
    """

    def __init__(
        self,
        folder,
        *,
        key: str,
        dtype: torch.dtype = torch.float16,
        memory_mb: float = 4096.0,
    ):
        if not key or "/" in key:
            raise ValueError(f"cache key must be a non-empty name without '/', got {key!r}")
        if memory_mb < 0:
            raise ValueError(f"memory_mb must be >= 0, got {memory_mb}")
        self.folder = Path(folder) / key
        self.key = key
        self.dtype = dtype
        self.memory_bytes = int(memory_mb * 2**20)
        self._memory: dict[Path, torch.Tensor] = {}
        self._memory_used = 0

    def path(self, utt_id: str, wav: str) -> Path:
        """The file of one utterance (the id is URL-quoted, so any id is a valid name)."""
        audio_key = f"{zlib.crc32(str(wav).encode()):08x}"
        return self.folder / f"{quote(str(utt_id), safe='')}.{audio_key}.pt"

    def has(self, utt_id: str, wav: str) -> bool:
        """Whether the utterance ``utt_id`` with audio file ``wav`` is cached."""
        return self.path(utt_id, wav).is_file()

    def load(self, utt_id: str, wav: str) -> torch.Tensor:
        """Cached layers of ``utt_id``, (frames, layers, hidden_size) float32 (a new tensor on
        every call, so a caller may change it in place).

        Example
        -------
        >>> cache = LayerFeatureCache(getfixture("tmp_path"), key="k")
        >>> cache.save("u", "a.wav", torch.ones(2, 1, 3))
        >>> first = cache.load("u", "a.wav"); first += 1
        >>> cache.load("u", "a.wav").sum().item(), cache.memory_used_bytes  # 6 float16 values
        (6.0, 12)
        """
        path = self.path(utt_id, wav)
        stored = self._memory.get(path)
        if stored is None:
            stored = self._read(utt_id, path)
            size = stored.numel() * stored.element_size()
            if self._memory_used + size <= self.memory_bytes:
                self._memory[path] = stored
                self._memory_used += size
        return stored.float() if stored.dtype != torch.float32 else stored.clone()

    @property
    def memory_used_bytes(self) -> int:
        """Bytes of features :meth:`load` keeps in memory."""
        return self._memory_used

    def _read(self, utt_id: str, path: Path) -> torch.Tensor:
        if not path.is_file():
            raise KeyError(f"utterance {utt_id!r} is not in the feature cache {self.folder}")
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if not bool(torch.isfinite(stored).all()):
            raise NonFiniteFeaturesError(
                f"cached features {path} hold NaN or inf (written by an older version?): "
                f"delete {self.folder} and rerun"
            )
        return stored

    def save(self, utt_id: str, wav: str, layers: torch.Tensor) -> None:
        """Store (frames, layers, hidden_size) features of one utterance (atomically).

        Features that are not finite, or overflow the storage type, raise
        :class:`~speechbrain_ext.downstream.featurizer.NonFiniteFeaturesError` and are not written.
        """
        if layers.dim() != 3:
            raise ValueError(
                f"cached features must be (frames, layers, hidden_size), got {tuple(layers.shape)}"
            )
        stored = layers.detach().to("cpu", self.dtype).contiguous().clone()
        if not bool(torch.isfinite(stored).all()):
            overflow = bool(torch.isfinite(layers).all())
            raise NonFiniteFeaturesError(
                f"features of utterance {utt_id!r} are not finite"
                + (f" once stored as {self.dtype} (values up to {layers.abs().max():.3g})"
                   if overflow else " (NaN or inf)")
                + "; refusing to cache them"
            )  # fmt: skip
        path = self.path(utt_id, wav)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save(stored, tmp)
        os.replace(tmp, path)
        old = self._memory.pop(path, None)  # a rewritten file is read again
        if old is not None:
            self._memory_used -= old.numel() * old.element_size()

    def write_info(self, info: dict) -> None:
        """Record what the cache holds (encoder class, sizes) in ``info.json``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True))

    @torch.no_grad()
    def fill(
        self,
        featurizer,
        rows,
        *,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
    ) -> CacheStats:
        """Compute and store the features of every utterance not cached yet.

        Arguments
        ---------
        featurizer : SSLFeaturizer
            Gives ``encode_layers(wavs, wav_lens) -> (batch, frames, layers, dim)``.
        rows : iterable of dict
            Manifest rows with at least ``ID`` and ``wav`` (and ``duration``, used to batch
            utterances of similar length together).
        batch_size : int
            Utterances per encoder forward pass.
        device : str or torch.device
            Where the encoder runs.

        Returns
        -------
        CacheStats
            How many utterances were already cached (hits) and computed (misses).
        """
        rows = list(rows)
        todo = [row for row in rows if not self.has(row["ID"], row["wav"])]
        stats = CacheStats(hits=len(rows) - len(todo), misses=len(todo))
        todo.sort(key=lambda row: float(row.get("duration", 0.0)))
        was_training = featurizer.training
        featurizer.eval()
        try:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                signals = [read_audio(row["wav"]) for row in batch]
                max_len = max(sig.shape[0] for sig in signals)
                wavs = torch.zeros(len(signals), max_len)
                for index, sig in enumerate(signals):
                    wavs[index, : sig.shape[0]] = sig
                wav_lens = torch.tensor([sig.shape[0] / max_len for sig in signals])
                layers = featurizer.encode_layers(wavs.to(device), wav_lens.to(device))
                frames = wav_lens_to_lengths(wav_lens, layers.shape[1])
                for row, layer, n_frames in zip(batch, layers, frames.tolist()):
                    self.save(row["ID"], row["wav"], layer[:n_frames])  # (frames, layers, dim)
        finally:
            featurizer.train(was_training)
        if todo:
            logger.info(
                "feature cache %s: %d hit(s), %d computed", self.folder, *vars(stats).values()
            )
        return stats
