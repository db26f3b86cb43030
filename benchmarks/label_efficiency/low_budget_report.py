"""The low-budget protocol's report (placeholder, filled in below)."""

from __future__ import annotations

from pathlib import Path


def render_low_budget(out_dir: Path, image: str) -> str:
    return f"(report of {out_dir} pending)\n"
