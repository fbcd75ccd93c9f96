"""``python -m speechbrain_ext.mp3s``: see :mod:`speechbrain_ext.mp3s.runner`."""

import sys

from speechbrain_ext.mp3s.runner import main

if __name__ == "__main__":
    sys.exit(main())
