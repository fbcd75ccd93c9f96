"""The READMEs' Python examples run and print what they say."""

import json
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(readme: Path) -> list[str]:
    """The ```python fenced blocks of a Markdown file."""
    return re.findall(r"^```python\n(.*?)^```", readme.read_text(), flags=re.M | re.S)


def test_top_level_readme_example_runs():
    (block,) = python_blocks(ROOT / "README.md")
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["y"].shape == (2, 100, 256)
    assert len(scope["layers"]) == 8 and scope["layers"][-1].shape == (2, 50, 144)
    alone = scope["mixer"](scope["x"][1:, :60])  # "row 1's valid frames equal running it alone"
    torch.testing.assert_close(scope["y"][1:, :60], alone, atol=1e-5, rtol=1e-5)


def test_bestrq_readme_loading_example_runs(tmp_path, monkeypatch):
    from speechbrain_ext.ssl.export import save_model_config
    from speechbrain_ext.ssl.model import build_bestrq_model

    (block,) = python_blocks(ROOT / "recipes" / "BEST-RQ" / "README.md")
    folder = re.search(r'load_ssl_encoder\("([^"]+)"\)', block).group(1)
    with torch.device("meta"):  # only the configuration is written
        model = build_bestrq_model("bestrq_base_fastformer")
    save_model_config(model, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    code = block.replace(
        f'load_ssl_encoder("{folder}")', f'load_ssl_encoder("{folder}", pretrained=False)'
    )
    scope = {"wavs": torch.randn(2, 16000), "wav_lens": torch.tensor([1.0, 0.5])}
    exec(compile(code, "recipes/BEST-RQ/README.md", "exec"), scope)
    claimed = re.search(r"# (\d+), (\d+), (\d+)\s*$", block, flags=re.M).groups()
    encoder = scope["encoder"]
    assert (encoder.num_layers, encoder.hidden_size, encoder.downsample_rate) == tuple(
        int(value) for value in claimed
    )
    assert len(scope["hidden"]) == encoder.num_layers
    assert json.loads((tmp_path / folder / "bestrq_model.json").read_text())["encoder"] == (
        "bestrq_base_fastformer"
    )
