"""``python -m benchmarks.label_efficiency`` (from the repository root)."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as ``python benchmarks/label_efficiency``
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.label_efficiency.cli import main

if __name__ == "__main__":
    main()
