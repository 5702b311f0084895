"""The `docker` runtime: model servers as labelled containers on a workstation's engine."""

from controller.runtimes.docker.runtime import DockerRuntime

__all__ = ["DockerRuntime"]
