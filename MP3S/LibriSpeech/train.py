#!/usr/bin/env python3
"""MP3S LibriSpeech ASR: a CTC probe (characters) on an encoder's learned layer mix; test WER.
Run by the downstream engine (task ``mp3s/LibriSpeech``).

Usage: python MP3S/LibriSpeech/train.py MP3S/LibriSpeech/hparams/bilstm_ctc.yaml \
    [--encoder=PATH] [--pretrained=False] [--data_folder=/path/to/LibriSpeech]
"""

import sys

from speechbrain_ext.downstream import run_recipe


def main(argv=None):
    return run_recipe("mp3s/LibriSpeech", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
