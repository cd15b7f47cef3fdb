"""``python -m benchmarks``: jaxretina against Captum and pytorch-grad-cam (benchmarks/anchors.py)."""

import sys

from benchmarks.anchors import main

sys.exit(main())
