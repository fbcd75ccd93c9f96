#!/usr/bin/env python3
"""MP3S CommonVoice low-resource ASR (Welsh or Basque): a CTC probe over a small BPE on an
encoder's learned layer mix; test WER.
Run by the downstream engine (task ``mp3s/CommonVoice``).

Usage: python MP3S/CommonVoice/train.py MP3S/CommonVoice/hparams/bilstm_ctc.yaml \
    [--language=eu] [--encoder=PATH] [--pretrained=False] [--data_folder=/path/to/cv-corpus/cy]
"""

import sys

from speechbrain_ext.downstream import run_recipe


def main(argv=None):
    return run_recipe("mp3s/CommonVoice", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
