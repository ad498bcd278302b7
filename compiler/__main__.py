"""`python -m onnx_snn` runs the command line."""

import sys

from onnx_snn.cli import main

sys.exit(main())
