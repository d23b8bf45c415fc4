"""``python -m simplenet_edu``: the same as the ``simplenet-edu`` command."""

import sys

from .cli import main

sys.exit(main())
