"""`--backend tensorflow|jax|torch` for the benchmarks: read before Keras is imported.

Keras picks its backend once, when it is first imported, from
``KERAS_BACKEND``. A benchmark imports this module first; it takes the value
of ``--backend`` from the command line (if given) into ``KERAS_BACKEND``,
and `add_argument` declares the option so that ``--help`` lists it.
"""

import os
import sys

CHOICES = ("tensorflow", "jax", "torch")


def _from_argv(argv):
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


_chosen = _from_argv(sys.argv[1:])
if _chosen is not None:
    if _chosen not in CHOICES:
        sys.exit(f"--backend {_chosen!r}: expected one of {', '.join(CHOICES)}")
    os.environ["KERAS_BACKEND"] = _chosen


def add_argument(parser):
    parser.add_argument(
        "--backend",
        choices=CHOICES,
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="the Keras backend (default: KERAS_BACKEND, else tensorflow)",
    )
