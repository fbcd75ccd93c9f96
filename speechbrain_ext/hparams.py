r"""Recipe yamls: one base holding every key, and small per-system variants on top of it.

A **base** is an ordinary HyperPyYAML file (``recipes/BEST-RQ/hparams/bestrq.yaml``). A
**variant** is a plain YAML mapping whose ``base`` key names the file it builds on (relative
to the variant; a variant may build on another variant), and whose other keys are values for
keys of the base::

    # hparams/bestrq_mamba.yaml
    base: bestrq.yaml
    mixer: mamba

Loading a variant loads its base with the variant's values, then the command line's, as
HyperPyYAML overrides: so ``--key=value`` reaches every key of the base, and a key the base does
not have (misspelt, in a variant or on the command line) is an error, as for any SpeechBrain
yaml.

Example
-------
>>> folder = getfixture("tmp_path")
>>> _ = (folder / "base.yaml").write_text("lr: 0.1\nsteps: 10\ntotal: !ref <lr> * <steps>\n")
>>> _ = (folder / "fast.yaml").write_text("base: base.yaml\nlr: 0.5\n")
>>> hparams, base, overrides = load_recipe_hparams(folder / "fast.yaml", "steps: 2")
>>> hparams["total"], base.name, overrides
(1.0, 'base.yaml', {'lr': 0.5, 'steps': 2})
>>> load_recipe_hparams(folder / "fast.yaml", {"lr_typo": 1.0})
Traceback (most recent call last):
...
ValueError: fast.yaml: 'lr_typo' is not a key of base.yaml
"""

import re
from pathlib import Path

import yaml
from hyperpyyaml import load_hyperpyyaml

_BASE_KEY = re.compile(r"^base:", re.M)


def is_variant(path) -> bool:
    """True when ``path`` is a variant (a top-level ``base:`` key)."""
    return _BASE_KEY.search(Path(path).read_text(encoding="utf-8")) is not None


def _top_level_keys(text: str) -> set[str]:
    return set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", text, re.M))


def resolve_variant(path) -> tuple[Path, dict]:
    """The base file under ``path`` and the values the variant chain sets on it.

    A base resolves to itself and no values.
    """
    path = Path(path)
    if not is_variant(path):
        return path, {}
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: a variant must be plain YAML (no tags): {error}") from error
    if not isinstance(values, dict) or not isinstance(values.get("base"), str):
        raise ValueError(f"{path}: a variant needs 'base: <file>' and key: value lines")
    parent = path.parent / values.pop("base")
    if not parent.is_file():
        raise FileNotFoundError(f"{path}: its base {parent} does not exist")
    base, inherited = resolve_variant(parent)
    return base, {**inherited, **values}


def parse_overrides(overrides) -> dict:
    """Command-line overrides (SpeechBrain's YAML string, or a dict) as a dict."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = yaml.safe_load(overrides)
    return dict(parsed or {})


def load_recipe_hparams(path, overrides=None) -> tuple[dict, Path, dict]:
    r"""Load a recipe yaml (base or variant) with command-line ``overrides``.

    Arguments
    ---------
    path : str or Path
        A base yaml or a variant.
    overrides : str, dict or None
        SpeechBrain's override string (``"lr: 0.1\\nseed: 2"``) or a dict.

    Returns
    -------
    hparams : dict
        The loaded HyperPyYAML.
    base : Path
        The base file that was loaded.
    overrides : dict
        Every override applied (the variant chain's, then the command line's); with ``base``
        they reproduce ``hparams`` (``sb.create_experiment_directory`` saves them so).
    """
    path = Path(path)
    base, values = resolve_variant(path)
    merged = {**values, **parse_overrides(overrides)}
    known = _top_level_keys(base.read_text(encoding="utf-8"))
    unknown = [key for key in merged if key not in known]
    if unknown:
        raise ValueError(f"{path.name}: {unknown[0]!r} is not a key of {base.name}")
    with open(base, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, merged)
    return hparams, base, merged
