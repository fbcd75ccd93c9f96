"""Token-mixer micro-benchmark (issue 2): one layer's time and peak memory against length.

A thin wrapper of ``python -m speechbrain_ext.bench mixers``; every option is passed through
(``--quick``, ``--out``, ``--lengths``, ``--mixers``, ``--device``...). See benchmarks/README.md.
"""

import sys

from speechbrain_ext.bench.mixers import main

if __name__ == "__main__":
    main(sys.argv[1:])
