"""Print every encoder preset's parameter count beside the studies' figures.

Usage::

    python -m speechbrain_ext.nnet.encoders                       # print the table
    python -m speechbrain_ext.nnet.encoders --markdown docs/presets.md   # also write it
"""

import argparse
from pathlib import Path

from speechbrain_ext.nnet.encoders.presets import presets_markdown


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.nnet.encoders",
        description="Parameter counts of the encoder presets beside the studies' figures.",
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the table to this Markdown file"
    )
    args = parser.parse_args(argv)
    text = presets_markdown()
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
