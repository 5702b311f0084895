"""docs/performance.md is shared by several benchmarks: each owns one `## ` section."""

from __future__ import annotations

import os
import platform
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def write_section(header: str, section: str, report: Path = REPORT) -> None:
    """Replace the section starting at `header` (up to the next `## `), or append it."""
    report.parent.mkdir(exist_ok=True)
    text = report.read_text() if report.exists() else "# Performance\n\n"
    if header in text:
        start = text.index(header)
        nxt = text.find("\n## ", start + len(header))
        text = text[:start] + section + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text)


def describe_machine() -> str:
    """CPU, core count, Python and load: numbers from a shared 2-core box need them."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average at start {load}"
    )
