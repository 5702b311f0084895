"""The `local` runtime: `aliasflow serve` child processes on loopback, state on disk."""

from controller.runtimes.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
