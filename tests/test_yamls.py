"""Every recipe yaml loads, and every top-level key in it is used somewhere.

A key nobody reads is a silent bug: ``--lr_shedule=linear`` on the command line fails (hyperpyyaml
rejects unknown overrides), but a key left in a yaml after the code stopped reading it, or one
the code reads under another name, changes nothing without a word. A key counts as used when:

- another yaml entry refers to it (``<key>``, ``<key[...]>``; a shared fragment's keys through
  ``<fragment[key]>`` in the yamls that include it);
- the recipe's ``train.py`` or the package reads it literally (``hparams["key"]``,
  ``hparams.key``, ``hparams.get("key"``);
- SpeechBrain's ``Brain`` reads it as a run option (``precision``, ``max_grad_norm``...);
- it is a hyperpyyaml side-effect entry (``__set_seed: !apply:...``).
"""

import re
from pathlib import Path

import pytest
from speechbrain.utils.run_opts import RunOptions

from speechbrain_ext.hparams import is_variant, load_recipe_hparams, resolve_variant

ROOT = Path(__file__).resolve().parents[1]
RECIPE_YAMLS = sorted(
    [
        *ROOT.glob("recipes/*/hparams/*.yaml"),
        *ROOT.glob("MP3S/*/hparams/*.yaml"),
        *ROOT.glob("speechbrain_ext/downstream/configs/*/*/*.yaml"),  # the tasks' probe yamls
    ],
    key=lambda p: str(p),
)
RECIPE_TEXTS = [p.read_text() for p in RECIPE_YAMLS]
FRAGMENTS = sorted(ROOT.glob("hparams/*.yaml"))
RUN_OPTIONS = set(RunOptions().as_dict())
PACKAGE_CODE = "\n".join(p.read_text() for p in sorted((ROOT / "speechbrain_ext").rglob("*.py")))


def top_level_keys(text: str) -> list[str]:
    """Keys of the yaml mapping's first level, in order."""
    return re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", text, re.M)


def read_in_code(key: str, code: str) -> bool:
    pattern = rf"""hparams\[["']{key}["']\]|hparams\.{key}\b|hparams\.get\(["']{key}["']"""
    return re.search(pattern, code) is not None


def referenced(key: str, text: str) -> bool:
    return re.search(rf"<{key}[>\[.]", text) is not None


def unused_keys(yaml: Path) -> list[str]:
    if is_variant(yaml):  # a variant's keys are its base's; loading checks they exist
        base = resolve_variant(yaml)[0]
        known = set(top_level_keys(base.read_text()))
        return [key for key in top_level_keys(yaml.read_text()) if key not in known | {"base"}]
    text = yaml.read_text()
    script = yaml.parent.parent / "train.py"
    code = (script.read_text() if script.is_file() else "") + PACKAGE_CODE
    including = [text for text in RECIPE_TEXTS if yaml.name in text]
    unused = []
    for key in top_level_keys(text):
        if key.startswith("__") or key in RUN_OPTIONS or referenced(key, text):
            continue
        if read_in_code(key, code):
            continue
        if any(re.search(rf"\[{key}\]", other) for other in including):  # <fragment[key]>
            continue
        unused.append(key)
    return unused


@pytest.mark.parametrize("yaml", RECIPE_YAMLS + FRAGMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_key_is_used(yaml):
    assert unused_keys(yaml) == []


def test_the_check_finds_an_unused_key(tmp_path):
    recipe = tmp_path / "Recipe"
    (recipe / "hparams").mkdir(parents=True)
    (recipe / "train.py").write_text('lr = hparams["lr"]\n')
    yaml = recipe / "hparams" / "probe.yaml"
    yaml.write_text("lr: 0.1\nprecision: bf16\n__set_seed: 1\nlr_shedule: linear\n")
    assert unused_keys(yaml) == ["lr_shedule"]
    yaml.write_text("lr: 0.1\nlr_shedule: linear\nsteps: !ref <lr_shedule>\n")
    assert unused_keys(yaml) == ["steps"]


@pytest.mark.parametrize("yaml", RECIPE_YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recipe_yaml_loads(yaml, tmp_path):
    base = resolve_variant(yaml)[0]
    overrides = {
        key: str(tmp_path / key)
        for key in top_level_keys(base.read_text())
        if key.endswith(("_folder", "_log"))
        and key not in ("builtin_folder", "data_folder", "iteration1_folder")
    }
    small = {"num_encoder_layers": 1, "d_model": 16, "nhead": 2, "d_ffn": 32}
    overrides.update({k: v for k, v in small.items() if k in top_level_keys(base.read_text())})
    hparams = load_recipe_hparams(yaml, overrides)[0]
    assert isinstance(hparams, dict) and hparams


VARIANTS = [yaml for yaml in RECIPE_YAMLS if is_variant(yaml)]


@pytest.mark.parametrize("yaml", VARIANTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_variants_are_small_and_do_not_repeat_their_base(yaml):
    lines = [line for line in yaml.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) <= 20, f"{yaml.name}: {len(lines)} lines"
    assert not any("!" in line.split("#")[0] for line in lines), "a variant is plain YAML"
    # A system variant (not a CPU job: cpu.yaml, cpu_chain.yaml) sets at most a handful of keys
    # (a SUPERB task on an MP3S yaml: base, fbank_stack, task, suite and one of its own).
    if not yaml.name.startswith("cpu"):
        assert len(lines) <= 5, lines


def test_every_recipe_has_a_base_and_variants_on_it():
    for recipe in sorted(ROOT.glob("recipes/*/hparams")):
        bases = [yaml for yaml in recipe.glob("*.yaml") if not is_variant(yaml)]
        assert len(bases) == 1, (recipe, bases)
