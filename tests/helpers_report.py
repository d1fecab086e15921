"""Test helpers for run reports (`local.report`): what a written report must hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

from local.report.markdown import SECTIONS
from local.report.plots import DATA_FILE


def linked_pngs(report: str) -> list[str]:
    """The PNGs a markdown report shows, as linked (relative to the report)."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)


def assert_every_section(report: str) -> None:
    for heading in SECTIONS.values():
        assert f"\n## {heading}\n" in report, heading


def assert_every_plot_has_data(md: Path) -> list[str]:
    """Every PNG the report links exists, is a PNG, and each of its panels has series with
    points (plots.json beside it); returns the linked files."""
    links = linked_pngs(md.read_text())
    for link in links:
        png = md.parent / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        data = json.loads((png.parent / DATA_FILE).read_text())[png.stem]
        assert data["panels"], png
        for panel in data["panels"]:
            assert panel["lines"] and all(panel["lines"].values()), (png, panel)
    return links
