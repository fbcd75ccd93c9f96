"""Load a pretrained (or randomly initialised) BEST-RQ encoder for downstream use.

A BEST-RQ recipe output folder holds everything needed, with no recipe code:

- ``bestrq_model.json``: the keyword arguments of
  :func:`~speechbrain_ext.ssl.model.build_bestrq_model` (written by
  :func:`save_model_config` when training starts);
- ``save/CKPT+*/model.ckpt``: SpeechBrain checkpoints of the whole model's
  ``state_dict`` (weights, frozen quantizer, feature normalisation statistics).

Example
-------
>>> import torch
>>> from speechbrain_ext.ssl.model import build_bestrq_model
>>> from speechbrain.utils.checkpoints import Checkpointer
>>> folder = getfixture("tmp_path")
>>> model = build_bestrq_model("conformer", num_layers=2, d_model=32, nhead=4,
...                            mixer="fastformer", kernel_size=7, codebook_size=16)
>>> save_model_config(model, folder).name
'bestrq_model.json'
>>> _ = Checkpointer(folder / "save", {"model": model}).save_checkpoint()
>>> encoder = load_ssl_encoder(folder)
>>> encoder.num_layers, encoder.hidden_size, encoder.downsample_rate
(3, 32, 640)
>>> wavs = torch.randn(1, 8000)
>>> hidden = encoder(wavs, torch.ones(1))
>>> len(hidden), hidden[-1].shape
(3, torch.Size([1, 13, 32]))
>>> model = model.eval()  # same weights, same outputs
>>> bool(torch.allclose(model.encode(wavs, torch.ones(1))[-1], hidden[-1], atol=1e-5))
True
>>> random = load_ssl_encoder(folder, pretrained=False)
>>> bool(torch.allclose(random(wavs, torch.ones(1))[-1], hidden[-1]))
False
"""

import json
import logging
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_ext.ssl.model import BestRQEncoder, BestRQModel, build_bestrq_model

logger = logging.getLogger(__name__)

CONFIG_NAME = "bestrq_model.json"
CHECKPOINT_DIR = "save"
MODEL_FILE = "model.ckpt"


def save_model_config(model: BestRQModel, folder) -> Path:
    """Write ``model.config`` to ``<folder>/bestrq_model.json`` and return the path."""
    path = Path(folder) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n")
    return path


def _find_config(start: Path) -> Path:
    # The output folder itself, or the output folder of <output>/save/CKPT+...
    for folder in [start, *start.parents][:3]:
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    raise FileNotFoundError(
        f"no {CONFIG_NAME} in {start} or the two folders above it: is this a BEST-RQ output folder?"
    )


def _latest_weights(root: Path) -> Path:
    save_dir = root / CHECKPOINT_DIR
    if not save_dir.is_dir():
        raise FileNotFoundError(f"no checkpoint folder {save_dir} (train the model first)")
    checkpoint = Checkpointer(save_dir).find_checkpoint()
    if checkpoint is None or "model" not in checkpoint.paramfiles:
        raise FileNotFoundError(f"no checkpoint with a 'model' file in {save_dir}")
    return checkpoint.paramfiles["model"]


def resolve_model_files(path) -> tuple[Path, Path]:
    """The config file and weights file that ``path`` designates.

    ``path`` may be the recipe output folder (latest checkpoint), a checkpoint
    folder ``CKPT+...``, its ``model.ckpt``, the ``bestrq_model.json`` or the
    ``hyperparams.yaml`` of the output folder.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir() and (path / MODEL_FILE).is_file():  # a checkpoint folder
        return _find_config(path), path / MODEL_FILE
    if path.is_dir():
        config = _find_config(path)
        return config, _latest_weights(config.parent)
    if path.suffix == ".ckpt":
        return _find_config(path.parent), path
    if path.name == CONFIG_NAME or path.suffix in (".yaml", ".yml"):
        config = _find_config(path.parent)
        return config, _latest_weights(config.parent)
    raise ValueError(
        f"cannot load a model from {path}: expected an output folder, a checkpoint "
        f"folder, a {MODEL_FILE}, a {CONFIG_NAME} or a hyperparams yaml"
    )


def load_bestrq_model(path, *, pretrained: bool = True, map_location="cpu") -> BestRQModel:
    """The whole BEST-RQ model (encoder, quantizer, head) saved under ``path``.

    With ``pretrained=False`` only the configuration is read and the model keeps
    its random initialisation.
    """
    if pretrained:
        config_path, weights = resolve_model_files(path)
    else:
        path = Path(path)
        config_path = (
            path
            if path.name == CONFIG_NAME
            else _find_config(path if path.is_dir() else path.parent)
        )
    config = json.loads(config_path.read_text())
    model = build_bestrq_model(**config)
    if pretrained:
        state = torch.load(weights, map_location=map_location)
        model.load_state_dict(state)
        logger.info("loaded BEST-RQ weights from %s", weights)
    return model


def load_ssl_encoder(path, *, pretrained: bool = True, map_location="cpu") -> BestRQEncoder:
    """A BEST-RQ encoder for downstream tasks, from a recipe output folder.

    Arguments
    ---------
    path : str or Path
        The recipe output folder (its latest checkpoint is used), a checkpoint
        folder or file inside it, its ``bestrq_model.json`` or ``hyperparams.yaml``.
    pretrained : bool
        False builds the same configuration with random weights (the "random
        encoder" baseline).
    map_location : str or torch.device
        Where to load the weights.

    Returns
    -------
    BestRQEncoder
        In eval mode; ``forward(wavs, wav_lens) -> list[Tensor]`` gives every
        representation (batch, frames, hidden_size), the front end's first, and it
        has attributes ``num_layers``, ``hidden_size`` and ``downsample_rate``.
    """
    model = load_bestrq_model(path, pretrained=pretrained, map_location=map_location)
    return model.encoder.eval()
