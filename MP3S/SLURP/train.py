#!/usr/bin/env python3
"""MP3S SLURP intent: scenario classification (18 classes) on an encoder's learned layer mix;
test accuracy. The task is ``speechbrain_ext.mp3s.tasks``' ``SLURP``, run by the downstream engine.

Usage: python MP3S/SLURP/train.py MP3S/SLURP/hparams/meanpool_linear.yaml \
    [--encoder=PATH] [--pretrained=False] [--data_folder=/path/to/slurp]
"""

import sys

from speechbrain_ext.downstream import run_recipe


def main(argv=None):
    return run_recipe("mp3s/SLURP", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
