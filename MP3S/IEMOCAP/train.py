#!/usr/bin/env python3
"""MP3S IEMOCAP emotion (neu, hap, sad, ang): cross-validation folds that leave one session
(or one speaker) out; mean test accuracy over the folds run.
Run by the downstream engine (task ``mp3s/IEMOCAP``).

Usage: python MP3S/IEMOCAP/train.py MP3S/IEMOCAP/hparams/meanpool_linear.yaml \
    [--encoder=PATH] [--data_folder=/path/to/IEMOCAP_full_release --folds=all] [--fold_by=speaker]
"""

import sys

from speechbrain_ext.downstream import run_recipe


def main(argv=None):
    return run_recipe("mp3s/IEMOCAP", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
