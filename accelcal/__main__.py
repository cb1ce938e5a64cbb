"""``python -m accelcal ...`` is the same as the ``accelcal`` console script."""

import sys

from .cli import main

sys.exit(main())
