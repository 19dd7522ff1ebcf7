"""Fails `make setup` early, with the fix, when the Python that makes the venv is too old."""

import sys

if sys.version_info < (3, 10):
    sys.exit(
        f"slac-robot needs Python >= 3.10, but {sys.executable} is {sys.version.split()[0]}. "
        "Run with a newer one, e.g.  make demo PYTHON=python3.11"
    )
