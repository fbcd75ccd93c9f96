"""``python -m speechbrain_ext.bench {speed,profile,mixers,peak} ...``: cost measurement commands.

- ``mixers``: one token-mixer layer's time and peak memory against length (:mod:`.mixers`).
- ``speed``: whole BEST-RQ models' inference and training-step time and peak memory against input
  length (:mod:`.speed`).
- ``profile``: storage, FLOP, BOP and an A100 time estimate of any encoder (:mod:`.profile`).
- ``peak``: this machine's measured matmul throughput and memory bandwidth (:mod:`.peak`).
"""

import sys

COMMANDS = {
    "mixers": "speechbrain_ext.bench.mixers",
    "speed": "speechbrain_ext.bench.speed",
    "profile": "speechbrain_ext.bench.profile",
    "peak": "speechbrain_ext.bench.peak",
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch to the command's ``main``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        given = repr(argv[0]) if argv else "nothing"
        raise SystemExit(f"usage: python -m speechbrain_ext.bench {{{names}}} ... (got {given})")
    import importlib

    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
