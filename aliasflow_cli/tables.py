"""The tables `aliasflow status` and `aliasflow history` print, from the API's JSON rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MESSAGE_WIDTH = 60


def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = [columns, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )


def model_label(row: dict[str, Any]) -> str:
    """`iris@champion`, `iris v3` for a pinned version, or `-` when nothing is known."""
    name = row.get("model_name")
    if not name:
        return "-"
    if row.get("alias"):
        return f"{name}@{row['alias']}"
    if row.get("pinned_version") is not None:
        return f"{name} v{row['pinned_version']}"
    return str(name)


def format_status_table(rows: list[dict[str, Any]]) -> str:
    columns = [
        "NAME",
        "SYNC",
        "HEALTH",
        "REASON",
        "MODEL",
        "DESIRED",
        "SERVED",
        "TARGET",
        "ENDPOINT",
        "MESSAGE",
    ]
    table: list[list[str]] = []
    problems: list[str] = []
    exposed: list[str] = []
    for row in rows:
        reason = row.get("reason") or "-"
        # The reason has its own column; the message repeats it as a prefix.
        message = str(row.get("message") or "").removeprefix(f"{reason}: ")
        if row.get("exposure") == "public-http":
            exposed.append(str(row["name"]))
        errors = row.get("manifest_errors") or []
        if errors:
            message = "manifest not applied (below)"
            problems += [f"  {row['name']}: {_problem(error)}" for error in errors]
        table.append(
            [
                str(row["name"]),
                str(row["sync"]),
                str(row["health"]),
                reason,
                model_label(row),
                row.get("desired_version") or "-",
                row.get("served_version") or "-",
                row.get("target_kind") or "-",
                row.get("endpoint") or "-",
                message[:MESSAGE_WIDTH],
            ]
        )
    text = _table(columns, table)
    if exposed:
        text += (
            "\n\nwarning: plain HTTP on a public IP (anyone on the path can read requests): "
            + ", ".join(exposed)
            + "; set spec.target.aci.subnetId (private) or spec.target.aci.tls"
        )
    if problems:
        text += "\n\nmanifest errors (fix the file; the controller picks it up):\n"
        text += "\n".join(problems)
    return text


def _problem(error: dict[str, Any]) -> str:
    where = str(error.get("file"))
    if error.get("document"):
        where += f" (document {error['document']})"
    field = f"{error['field']}: " if error.get("field") else ""
    return f"{where}: {field}{error.get('message')}"


def format_history_table(rows: list[dict[str, Any]]) -> str:
    columns = [
        "STARTED (UTC)",
        "TRIGGER",
        "VERSION",
        "ACTION",
        "RESULT",
        "REASON",
        "TOOK",
        "MESSAGE",
    ]
    table = [
        [
            _when(row.get("started_at")),
            str(row.get("trigger") or "-"),
            str(row.get("model_version") or "-"),
            str(row.get("action") or "-"),
            str(row.get("result") or "-"),
            str(row.get("reason") or "-"),
            _took(row.get("duration_seconds")),
            str(row.get("message") or "").replace("\n", " ")[:MESSAGE_WIDTH],
        ]
        for row in rows
    ]
    return _table(columns, table)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "running"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
