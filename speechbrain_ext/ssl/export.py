"""Load a pretrained (or randomly initialised) SSL encoder for downstream use.

A BEST-RQ or HuBERT recipe output folder holds everything needed, with no recipe code:

- ``<framework>_model.json`` (``bestrq_model.json``, ``hubert_model.json``): the keyword
  arguments of the framework's builder (:func:`~speechbrain_ext.ssl.model.build_bestrq_model`,
  :func:`~speechbrain_ext.ssl.hubert_model.build_hubert_model`), written by
  :func:`save_model_config` when training starts;
- ``save/CKPT+*/model.ckpt``: SpeechBrain checkpoints of the whole model's
  ``state_dict`` (weights, frozen quantizer, feature normalisation statistics);
- for a quantized model only (a distilled student, ``docs/quantization.md``),
  ``quantization.json``: the spec given to :func:`~speechbrain_ext.quant.quantize_model`,
  applied before the weights are loaded, written by :func:`save_quantization_spec`.

A HuBERT run keeps one such folder per iteration (``iter1``, ``iter2``...); its output folder
designates the latest iteration that has a checkpoint.

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
import re
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import Checkpointer
from torch import nn

from speechbrain_ext.quant.model import quant_spec, quantize_model
from speechbrain_ext.ssl.hubert_model import build_hubert_model
from speechbrain_ext.ssl.model import build_bestrq_model

logger = logging.getLogger(__name__)

BUILDERS = {"bestrq": build_bestrq_model, "hubert": build_hubert_model}
"""SSL framework → the builder whose keyword arguments its config file holds."""
CONFIG_NAMES = {f"{framework}_model.json": framework for framework in BUILDERS}
CONFIG_NAME = "bestrq_model.json"
QUANTIZATION_NAME = "quantization.json"
CHECKPOINT_DIR = "save"
MODEL_FILE = "model.ckpt"
ITERATION_FOLDER = re.compile(r"^iter(\d+)$")


def save_model_config(model: nn.Module, folder) -> Path:
    """Write ``model.config`` to ``<folder>/<framework>_model.json`` and return the path."""
    path = Path(folder) / f"{model.framework}_model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n")
    return path


def save_quantization_spec(model: nn.Module, folder) -> Path | None:
    """Write ``model``'s quantization spec to ``<folder>/quantization.json`` (a quantized model
    only: an FP32 one leaves no file, and removes a stale one) and return the path.

    Example
    -------
    >>> from speechbrain_ext.quant import quantize_model
    >>> folder = getfixture("tmp_path")
    >>> save_quantization_spec(torch.nn.Linear(2, 2), folder) is None
    True
    >>> path = save_quantization_spec(quantize_model(torch.nn.Linear(2, 2), "w1a2"), folder)
    >>> json.loads(path.read_text())
    {'spec': 'w1a2'}
    """
    path = Path(folder) / QUANTIZATION_NAME
    spec = quant_spec(model)
    if spec == "fp32":
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"spec": spec}) + "\n")
    return path


def _config_in(folder: Path) -> Path | None:
    for name in CONFIG_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def latest_iteration(folder) -> Path | None:
    """The ``iter<N>`` subfolder of a HuBERT run with the highest N that has a checkpoint."""
    folder = Path(folder)
    found = []
    for child in folder.iterdir() if folder.is_dir() else []:
        match = ITERATION_FOLDER.match(child.name)
        if match and _config_in(child) and list((child / CHECKPOINT_DIR).glob("CKPT+*")):
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def _find_config(start: Path) -> Path:
    """The model json that the folder ``start`` designates, in the documented cases only.

    ``start`` is the output folder itself (its json inside), a checkpoint folder
    ``<output>/save/CKPT+...`` (the json two folders up), or a HuBERT run folder (the json of
    its latest trained iteration). Any other folder is an error naming it: searching the
    folders above a misspelt or unrelated path would quietly build another model from a
    parent folder's config.
    """
    config = _config_in(start)
    if config is not None:
        return config
    if start.name.startswith("CKPT+") and start.parent.name == CHECKPOINT_DIR:
        config = _config_in(start.parent.parent)
        if config is not None:
            return config
        raise FileNotFoundError(
            f"{start} is a checkpoint folder but {start.parent.parent} holds no "
            f"{' or '.join(CONFIG_NAMES)}"
        )
    iteration = latest_iteration(start)
    if iteration is not None:
        return _config_in(iteration)
    names = " or ".join(CONFIG_NAMES)
    raise FileNotFoundError(
        f"{start} is not a BEST-RQ or HuBERT output folder: no {names} in it, it is not a "
        f"checkpoint folder {CHECKPOINT_DIR}/CKPT+..., and it has no trained iteration folder "
        "iter<N>"
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
    if path.name in CONFIG_NAMES or path.suffix in (".yaml", ".yml"):
        config = _find_config(path.parent)
        return config, _latest_weights(config.parent)
    raise ValueError(
        f"cannot load a model from {path}: expected an output folder, a checkpoint "
        f"folder, a {MODEL_FILE}, a {' or '.join(CONFIG_NAMES)} or a hyperparams yaml"
    )


def non_finite_tensors(module: nn.Module) -> list[str]:
    """Names of the parameters and floating-point buffers of ``module`` holding NaN or inf.

    Example
    -------
    >>> layer = nn.Linear(2, 2)
    >>> non_finite_tensors(layer)
    []
    >>> with torch.no_grad():
    ...     layer.bias[0] = float("nan")
    >>> non_finite_tensors(layer)
    ['bias']
    """
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [
        name
        for name, tensor in tensors
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def check_finite_weights(module: nn.Module, *, source) -> None:
    """Raise ``ValueError`` naming ``source`` if any weight or buffer is NaN or inf.

    A model that diverged during training must never be probed or reused as if it were one.

    Example
    -------
    >>> layer = nn.Linear(2, 2)
    >>> check_finite_weights(layer, source="demo.ckpt")
    >>> with torch.no_grad():
    ...     layer.weight[0, 0] = float("inf")
    >>> check_finite_weights(layer, source="demo.ckpt")
    Traceback (most recent call last):
    ...
    ValueError: demo.ckpt holds non-finite (NaN or inf) weights in 1 tensor(s): weight; ...
    """
    bad = non_finite_tensors(module)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"{source} holds non-finite (NaN or inf) weights in {len(bad)} tensor(s): {shown}; "
            "the training run diverged: use an earlier checkpoint"
        )


def model_files(path, *, pretrained: bool = True) -> dict[str, Path]:
    """The files :func:`load_ssl_model` reads for ``path``: ``config`` (the model json),
    ``quantization`` (when the folder has one) and ``weights`` (unless ``pretrained=False``).

    ``path`` must exist (a misspelt path is an error naming it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if pretrained:
        config_path, weights = resolve_model_files(path)
        files = {"config": config_path, "weights": weights}
    else:
        config_path = (
            path
            if path.name in CONFIG_NAMES
            else _find_config(path if path.is_dir() else path.parent)
        )
        files = {"config": config_path}
    quantization = config_path.parent / QUANTIZATION_NAME
    if quantization.is_file():
        files["quantization"] = quantization
    return files


def load_ssl_model(path, *, pretrained: bool = True, map_location="cpu") -> nn.Module:
    """The whole pretraining model (BEST-RQ or HuBERT: encoder and head) saved under ``path``.

    With ``pretrained=False`` only the configuration is read and the model keeps
    its random initialisation. A folder with a ``quantization.json`` gives the quantized model
    (its spec applied before the weights are loaded). ``path`` must exist (a misspelt path is
    an error naming it, never a model found in a folder above it); loaded weights must be
    finite (:func:`check_finite_weights`).
    """
    files = model_files(path, pretrained=pretrained)
    config_path = files["config"]
    framework = CONFIG_NAMES[config_path.name]
    config = json.loads(config_path.read_text())
    model = BUILDERS[framework](**config)
    if "quantization" in files:
        model = quantize_model(model, json.loads(files["quantization"].read_text())["spec"])
    if pretrained:
        weights = files["weights"]
        state = torch.load(weights, map_location=map_location)
        model.load_state_dict(state)
        check_finite_weights(model, source=weights)
        logger.info("loaded %s weights from %s", framework, weights)
    return model


load_bestrq_model = load_ssl_model  # the name it had before HuBERT


def load_ssl_encoder(path, *, pretrained: bool = True, map_location="cpu") -> nn.Module:
    """A BEST-RQ or HuBERT encoder for downstream tasks, from a recipe output folder.

    Arguments
    ---------
    path : str or Path
        The recipe output folder (its latest checkpoint is used; for HuBERT, of its latest
        trained iteration), a checkpoint folder or file inside it, its model json or
        ``hyperparams.yaml``.
    pretrained : bool
        False builds the same configuration with random weights (the "random
        encoder" baseline).
    map_location : str or torch.device
        Where to load the weights.

    Returns
    -------
    BestRQEncoder or HubertEncoder
        In eval mode; ``forward(wavs, wav_lens) -> list[Tensor]`` gives every
        representation (batch, frames, hidden_size), the front end's first, and it
        has attributes ``num_layers``, ``hidden_size`` and ``downsample_rate``.
    """
    model = load_ssl_model(path, pretrained=pretrained, map_location=map_location)
    return model.encoder.eval()
