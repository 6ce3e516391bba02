"""`python -m keras_repro` is the `keras-repro` command."""

import sys

from keras_repro.cli import main

sys.exit(main())
