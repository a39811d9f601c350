"""`python -m sharpness.book prepare | check BUILD_DIR`: the book's build helpers (see `build`)."""

import sys

from .build import main

sys.exit(main())
