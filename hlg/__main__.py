"""``python -m hlg``: the command line (see :mod:`hlg._cli`)."""

import sys

from hlg._cli import main

sys.exit(main())
