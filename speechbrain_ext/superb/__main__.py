"""``python -m speechbrain_ext.superb``: see :mod:`speechbrain_ext.superb.runner`."""

import sys

from speechbrain_ext.superb.runner import main

if __name__ == "__main__":
    sys.exit(main())
