"""A manifest source for tests: re-reads its directory on every snapshot, at a fixed revision.

The controller's own source reads once per refresh; tests that write a manifest and
reconcile at once want the file read now, without a git repository behind it.
"""

from __future__ import annotations

from pathlib import Path

from controller.core.manifest import ManifestSnapshot
from controller.manifests.loader import load_directory


class DirectorySource:
    def __init__(
        self, directory: Path, revision: str = "rev-1", environ: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self.revision = revision
        self.environ = environ

    def snapshot(self) -> ManifestSnapshot:
        result = load_directory(self.directory, environ=self.environ)
        result.revision = self.revision
        return result

    def refresh(self) -> ManifestSnapshot:
        return self.snapshot()

    def pull(self) -> bool:
        return False
