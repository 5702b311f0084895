"""The Engine API's ContainerSummary and ContainerInspectResponse, to check the fake engine.

Transcribed from moby/moby `api/swagger.yaml` (definitions `ContainerSummary`,
`PortSummary`, `ContainerInspectResponse`, `ContainerState`, `PortBinding`): the types,
enums and required fields of the properties the fake engine returns. The swagger itself
is not copied; a property the fake starts to send must be added here from it.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft4Validator

# ContainerState.Status and ContainerSummary.State share this enum in the swagger.
STATES = ["created", "running", "paused", "restarting", "exited", "removing", "dead"]
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_STRINGS = {"type": "array", "items": {"type": "string"}}

DEFINITIONS: dict[str, Any] = {
    "PortSummary": {
        "type": "object",
        "required": ["PrivatePort", "Type"],
        "properties": {
            "IP": {"type": "string"},
            "PrivatePort": {"type": "integer"},
            "PublicPort": {"type": "integer"},
            "Type": {"type": "string", "enum": ["tcp", "udp", "sctp"]},
        },
    },
    "ContainerSummary": {
        "type": "object",
        "properties": {
            "Id": {"type": "string"},
            "Names": _STRINGS,
            "Image": {"type": "string"},
            "ImageID": {"type": "string"},
            "Command": {"type": "string"},
            "Created": {"type": "integer"},
            "Ports": {"type": "array", "items": {"$ref": "#/definitions/PortSummary"}},
            "Labels": _STRING_MAP,
            "State": {"type": "string", "enum": STATES},
            "Status": {"type": "string"},
            "HostConfig": {"type": "object", "properties": {"NetworkMode": {"type": "string"}}},
        },
    },
    "ContainerState": {
        "type": "object",
        "properties": {
            "Status": {"type": "string", "enum": STATES},
            "Running": {"type": "boolean"},
            "Paused": {"type": "boolean"},
            "Restarting": {"type": "boolean"},
            "OOMKilled": {"type": "boolean"},
            "Dead": {"type": "boolean"},
            "Pid": {"type": "integer"},
            "ExitCode": {"type": "integer"},
            "Error": {"type": "string"},
            "StartedAt": {"type": "string"},
            "FinishedAt": {"type": "string"},
        },
    },
    "PortBinding": {
        "type": "object",
        "properties": {"HostIp": {"type": "string"}, "HostPort": {"type": "string"}},
    },
    "ContainerInspectResponse": {
        "type": "object",
        "properties": {
            "Id": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            "Created": {"type": "string"},
            "State": {"$ref": "#/definitions/ContainerState"},
            "Image": {"type": "string"},
            "Name": {"type": "string"},
            "RestartCount": {"type": "integer"},
            "Config": {
                "type": "object",
                "properties": {
                    "Image": {"type": "string"},
                    "Env": _STRINGS,
                    "Labels": _STRING_MAP,
                    "Cmd": {"anyOf": [_STRINGS, {"type": "null"}]},
                    "Tty": {"type": "boolean"},
                    "ExposedPorts": {"type": "object"},
                },
            },
            "HostConfig": {"type": "object"},
            "NetworkSettings": {
                "type": "object",
                "properties": {
                    "Ports": {
                        "type": "object",
                        "additionalProperties": {
                            "anyOf": [
                                {"type": "array", "items": {"$ref": "#/definitions/PortBinding"}},
                                {"type": "null"},
                            ]
                        },
                    }
                },
            },
        },
    },
}


def violations(definition: str, body: Any) -> list[str]:
    validator = Draft4Validator({"$ref": f"#/definitions/{definition}", "definitions": DEFINITIONS})
    return [
        f"{definition}: {'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(body)
    ]
