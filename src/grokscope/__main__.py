"""``python -m grokscope``: the command line (:mod:`grokscope.cli`)."""

import sys

from .cli import main

sys.exit(main())
