"""Command line: ``python -m speechbrain_ext.corpus --out DIR --minutes N --seed S``."""

import argparse
import logging
import sys
import time

from speechbrain_ext.corpus.espeak import EspeakUnavailableError
from speechbrain_ext.corpus.generate import (
    DEFAULT_MINUTES,
    DEFAULT_SEED,
    ensure_builtin_corpus,
    generate_corpus,
    read_marker,
)


def main(argv=None) -> int:
    """Generate (or reuse) the built-in corpus; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_ext.corpus",
        description="Synthesize the built-in multi-task speech corpus offline with eSpeak NG.",
    )
    parser.add_argument("--out", required=True, help="corpus folder (new, empty or a corpus)")
    parser.add_argument(
        "--minutes", type=float, default=DEFAULT_MINUTES, help="total audio, in minutes"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (>= 0)")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes")
    parser.add_argument(
        "--force", action="store_true", help="regenerate even if the same corpus exists"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO)
    make = generate_corpus if args.force else ensure_builtin_corpus
    start = time.perf_counter()
    try:
        folder = make(
            args.out,
            minutes=args.minutes,
            seed=args.seed,
            workers=args.workers,
            progress=not args.quiet,
        )
    except (ValueError, FileExistsError, EspeakUnavailableError) as error:
        parser.exit(2, f"error: {error}\n")
    info = read_marker(folder)
    print(
        f"{folder}: {info['clips']} clips, {info['audio_minutes']:.1f} min of audio "
        f"({time.perf_counter() - start:.1f} s); manifests in {folder / 'manifests'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
