"""`python -m segtune ...` is the `segtune` command."""

import sys

from segtune.cli import main

sys.exit(main())
