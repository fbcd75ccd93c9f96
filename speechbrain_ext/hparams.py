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

``base`` may also name a file shipped inside an installed package, as ``<package>:<path>``
(``base: speechbrain_ext.downstream:configs/mp3s/SLURP/meanpool_linear.yaml``): the recipe
folder's variant then stays a few lines while the yaml itself is package data.

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
>>> load_recipe_hparams(folder / "fast.yaml", "lr: abc")
Traceback (most recent call last):
...
ValueError: --lr=abc: base.yaml gives lr a number (0.1); 'abc' is not one
"""

import re
from importlib.resources import files
from pathlib import Path

import yaml
from hyperpyyaml import load_hyperpyyaml

_BASE_KEY = re.compile(r"^base:", re.M)
_PACKAGE_BASE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+):(.+)$")


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
    parent = base_path(path, values.pop("base"))
    if not parent.is_file():
        raise FileNotFoundError(f"{path}: its base {parent} does not exist")
    base, inherited = resolve_variant(parent)
    return base, {**inherited, **values}


def base_path(variant, base: str) -> Path:
    """The file a variant's ``base`` names: ``<package>:<path>`` inside an importable package
    (a dotted name, ``speechbrain_ext.downstream:configs/...``), else a path relative to the
    variant.

    Example
    -------
    >>> base_path("MP3S/SLURP/hparams/x.yaml", "speechbrain_ext.downstream:configs/a.yaml").name
    'a.yaml'
    >>> str(base_path("hparams/fast.yaml", "base.yaml"))
    'hparams/base.yaml'
    """
    match = _PACKAGE_BASE.match(base)
    if match is None:
        return Path(variant).parent / base
    package, resource = match.groups()
    return Path(str(files(package))) / resource


def parse_overrides(overrides) -> dict:
    """Command-line overrides (SpeechBrain's YAML string, or a dict) as a dict."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = yaml.safe_load(overrides)
    return dict(parsed or {})


def _plain_defaults(text: str) -> dict:
    """Top-level ``key: scalar`` values of a HyperPyYAML text (tagged entries are skipped)."""
    defaults = {}
    for key, value in re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):[ \t]*([^\n#]*)", text, re.M):
        value = value.strip()
        if value and not value.startswith(("!", "&", "*")):
            try:
                defaults[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
    return defaults


def check_override_types(base_text: str, overrides: dict, *, base_name: str = "the base") -> None:
    """A value whose base default is a number must be a number (``--lr=abc`` names the key)."""
    defaults = _plain_defaults(base_text)
    for key, value in overrides.items():
        default = defaults.get(key)
        is_number = isinstance(default, int | float) and not isinstance(default, bool)
        if is_number and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(
                f"--{key}={value}: {base_name} gives {key} a number ({default}); "
                f"{value!r} is not one"
            )


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
    base_text = base.read_text(encoding="utf-8")
    known = _top_level_keys(base_text)
    unknown = [key for key in merged if key not in known]
    if unknown:
        raise ValueError(f"{path.name}: {unknown[0]!r} is not a key of {base.name}")
    check_override_types(base_text, merged, base_name=base.name)
    with open(base, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, merged)
    return hparams, base, merged
