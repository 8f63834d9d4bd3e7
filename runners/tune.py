"""`python runners/tune.py ...` from a clone: the same as `segtune tune ...` (segtune must be installed:
`pip install -e .`)."""

import sys

from segtune.runners.command import main

if __name__ == "__main__":
    sys.exit(main(prog="tune.py"))
