"""``python -m rctr.shim STATE_DIR --ready-fd N``."""

import sys

from ._main import main

sys.exit(main())
