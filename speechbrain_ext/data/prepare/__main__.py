"""Command line: ``python -m speechbrain_ext.data.prepare CORPUS DATA_FOLDER SAVE_FOLDER``.

Preparer options are passed as ``--option key=value`` (values are Python literals, or plain
strings), e.g. ``--option "splits=['dev-clean']" --option on_bad_audio=error``.
"""

import argparse
import ast
import logging
import sys

from speechbrain_ext.data.prepare import PREPARERS, prepare


def _parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None) -> int:
    """Parse arguments, run the preparer and print the manifests it wrote."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.data.prepare", description=__doc__
    )
    parser.add_argument("corpus", choices=PREPARERS.names())
    parser.add_argument("data_folder")
    parser.add_argument("save_folder")
    parser.add_argument("--option", action="append", default=[], type=_parse_option)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    outputs = prepare(args.corpus, args.data_folder, args.save_folder, **dict(args.option))
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
