"""The local runtime's inventory: which model-server and proxy processes it owns, on disk.

The servers run in their own sessions and outlive the controller; this file is how a
restarted controller adopts them instead of starting duplicates (see `statefile.py` for
how it is written and what a bad file means).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from controller.runtimes.statefile import JsonStateFile

Record = TypeVar("Record", "ServerRecord", "ProxyRecord")


def _from_json(cls: type[Record], raw: object) -> Record:
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    names = {f.name for f in fields(cls)}
    # A field added later has a default: a file written before it still reads.
    required = {f.name for f in fields(cls) if f.default is MISSING}
    missing = required - raw.keys()
    if missing:
        raise ValueError(f"missing keys {sorted(missing)}")
    record = cls(**{name: raw[name] for name in names if name in raw})
    if not isinstance(record.pid, int) or not isinstance(record.port, int):
        raise ValueError("pid and port must be integers")
    return record


@dataclass(frozen=True)
class ServerRecord:
    """One model-server process the runtime started."""

    pid: int
    port: int
    endpoint: str
    spec_hash: str
    # The version the controller last set (boot MODEL_URI, then each hot swap).
    model_version: str
    started_at: str
    log_file: str
    # `common.ADMIN_KEY_SCHEME` when the server holds its own deployment key; "" for one
    # started with the shared admin token (before signed admin requests).
    admin_key: str = ""

    @classmethod
    def from_json(cls, raw: object) -> ServerRecord:
        return _from_json(cls, raw)


@dataclass(frozen=True)
class ProxyRecord:
    """The proxy that holds a deployment's stable port (see `proxy.py`)."""

    pid: int
    port: int
    control: str
    started_at: str
    log_file: str

    @classmethod
    def from_json(cls, raw: object) -> ProxyRecord:
        return _from_json(cls, raw)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class LocalState:
    """Current servers by deployment name, plus `pending`: servers being started, and
    `proxies`: what holds each deployment's stable port.

    A pending record exists only while a new server is being health-checked. One that
    survives a crash of the controller marks an orphan the next apply must stop. A state
    file written before proxies existed has none: its deployments are recreated behind one.
    """

    servers: dict[str, ServerRecord]
    pending: dict[str, ServerRecord]
    proxies: dict[str, ProxyRecord]

    @classmethod
    def empty(cls) -> LocalState:
        return cls({}, {}, {})

    def names(self) -> list[str]:
        return sorted(self.servers.keys() | self.pending.keys() | self.proxies.keys())


def state_file(path: Path) -> JsonStateFile[LocalState]:
    return JsonStateFile(
        path,
        parse=_parse,
        dump=_dump,
        empty=LocalState.empty,
        consequence="treating the local runtime as owning nothing",
    )


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    section = raw.get(key, {})
    if not isinstance(section, dict):
        raise ValueError(f"{key!r} is not an object")
    return section


def _parse(raw: dict[str, Any]) -> LocalState:
    return LocalState(
        servers={str(k): ServerRecord.from_json(v) for k, v in _section(raw, "servers").items()},
        pending={str(k): ServerRecord.from_json(v) for k, v in _section(raw, "pending").items()},
        proxies={str(k): ProxyRecord.from_json(v) for k, v in _section(raw, "proxies").items()},
    )


def _dump(state: LocalState) -> dict[str, Any]:
    return {
        "servers": {name: asdict(r) for name, r in sorted(state.servers.items())},
        "pending": {name: asdict(r) for name, r in sorted(state.pending.items())},
        "proxies": {name: asdict(r) for name, r in sorted(state.proxies.items())},
    }
