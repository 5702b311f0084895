"""Read what a Dockerfile's final stage would run, so tests can run it without Docker.

No Docker engine runs here. What an image does at start is fully described by its last
stage's ENV, WORKDIR, USER, ENTRYPOINT/CMD and HEALTHCHECK; this module evaluates them the
way the builder does (ARG defaults and build args, `$VAR`, `${VAR}`, `${VAR:-word}`,
`${VAR:+word}`, line continuations, exec-form JSON) and nothing more.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

# What python:*-slim sets before our ENV lines (`ENV PATH=/opt/venv/bin:$PATH` extends it).
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


@dataclass
class Healthcheck:
    argv: list[str]
    options: dict[str, str]


@dataclass
class FinalStage:
    base: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: Healthcheck | None = None
    exposed: list[str] = field(default_factory=list)
    run_lines: list[str] = field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        value = values.get(name, "")
        if match["op"] == "-":
            return value or match["word"]
        if match["op"] == "+":
            return match["word"] if value else ""
        return value

    return _VAR.sub(one, text)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _exec_form(text: str, shell: bool = True) -> list[str]:
    if text.startswith("["):
        return [str(part) for part in json.loads(text)]
    return ["/bin/sh", "-c", text] if shell else shlex.split(text)


def final_stage(path: Path, build_args: dict[str, str] | None = None) -> FinalStage:
    """Evaluate the last stage as `docker build --build-arg ...` would configure it."""
    build_args = build_args or {}
    global_args: dict[str, str] = {}
    stage: FinalStage | None = None
    scope: dict[str, str] = {}
    for keyword, rest in instructions(path):
        if keyword == "ARG":
            name, has_default, default = rest.partition("=")
            if name in build_args:
                value = build_args[name]
            elif has_default:
                value = substitute(default.strip().strip('"'), {**global_args, **scope})
            else:
                # A stage sees a global ARG's default only once it re-declares the name.
                value = global_args.get(name, "") if stage is not None else ""
            (scope if stage is not None else global_args)[name] = value
        elif keyword == "FROM":
            base = substitute(rest.split()[0], global_args)
            stage = FinalStage(base=base, env=dict(BASE_IMAGE_ENV))
            scope = {}
        elif stage is None:
            continue
        elif keyword == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                stage.env[name] = substitute(value, {**scope, **stage.env})
        elif keyword == "WORKDIR":
            stage.workdir = substitute(rest, {**scope, **stage.env})
        elif keyword == "USER":
            stage.user = rest
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = _exec_form(rest)
        elif keyword == "CMD":
            stage.cmd = _exec_form(rest)
        elif keyword == "EXPOSE":
            stage.exposed.extend(rest.split())
        elif keyword == "RUN":
            stage.run_lines.append(rest)
        elif keyword == "HEALTHCHECK":
            match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", rest)
            assert match, f"HEALTHCHECK without CMD in {path}"
            options = dict(opt[2:].partition("=")[::2] for opt in match[1].split())
            stage.healthcheck = Healthcheck(_exec_form(match[2].strip()), options)
    assert stage is not None, f"no FROM in {path}"
    return stage


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions of every named stage (`FROM ... AS name`)."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            parts = rest.split()
            current = []
            if len(parts) >= 3 and parts[1].upper() == "AS":
                named[parts[2]] = current
        elif current is not None:
            current.append((keyword, rest))
    return named
