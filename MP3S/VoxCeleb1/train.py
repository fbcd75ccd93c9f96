#!/usr/bin/env python3
"""MP3S VoxCeleb1 speaker verification: an x-vector or ECAPA probe trained to classify the
training speakers (AAM-softmax) on an encoder's learned layer mix; cosine scoring of the
trials; test EER.
Run by the downstream engine (task ``mp3s/VoxCeleb1``).

Usage: python MP3S/VoxCeleb1/train.py MP3S/VoxCeleb1/hparams/xvector.yaml \
    [--encoder=PATH] [--pretrained=False] [--data_folder=/path/to/VoxCeleb1]
"""

import sys

from speechbrain_ext.downstream import run_recipe


def main(argv=None):
    return run_recipe("mp3s/VoxCeleb1", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
