"""``python -m simplenet_edu``: the same as the ``simplenet-edu`` command."""

import sys

from .apps.cli import main

sys.exit(main())
