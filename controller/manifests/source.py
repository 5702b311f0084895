"""Where desired state comes from: a directory of manifests, optionally a git checkout.

The source holds one snapshot of the manifests (revision, deployments, errors) that
reconciles, the fleet pass and the API read for free. Only `refresh()` touches the disk
and runs git: the controller calls it when it polls, after a pull, and when a person asks
for a sync. Unchanged files are not parsed again.

Each reconcile records the commit it read (`ManifestSnapshot.revision`), so history can say
which version of the manifests produced a deployment; a work tree with uncommitted
changes under the manifests directory is marked `<sha>-dirty`, because that sha alone
would not reproduce what was applied.

With a remote configured the controller owns a clone in `checkout_dir` and moves it to
`origin/<branch>` on every `pull()` (interval, or at once on a git push webhook). Reset,
not merge: the remote is the source of truth and the checkout is never edited locally.
Git runs as a subprocess with a timeout and never prompts; a failure is a
`GitUnavailableError` (temporary: the last good checkout stays in place and is still read).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

from controller.core.errors import GitUnavailableError
from controller.core.manifest import ManifestSnapshot
from controller.manifests.loader import ParseCache, load_directory

DEFAULT_GIT_TIMEOUT_SECONDS = 60.0
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """Hide `user:token@` in URLs: a token in ALIASFLOW_GIT_URL must never reach logs."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


class GitManifestSource:
    """The `ManifestSource` seam over a directory: `snapshot()`, `refresh()`, `pull()`.

    Without `git_url`, `directory` is read as it is (a plain directory or part of any git
    work tree, whose HEAD is recorded). With `git_url`, `checkout_dir` is required and
    owned by the controller; a relative `directory` is taken inside the checkout.
    """

    def __init__(
        self,
        directory: Path,
        git_url: str | None = None,
        git_branch: str = "main",
        checkout_dir: Path | None = None,
        git_timeout: float = DEFAULT_GIT_TIMEOUT_SECONDS,
    ) -> None:
        if git_url and checkout_dir is None:
            raise ValueError("checkout_dir is required when git_url is set")
        self.git_url = git_url or None
        self.git_branch = git_branch
        self.checkout_dir = checkout_dir
        self.git_timeout = git_timeout
        if self.git_url and checkout_dir is not None and not directory.is_absolute():
            self.directory = checkout_dir / directory
        else:
            self.directory = directory
        # pull() resets files that refresh() reads; never let the two interleave.
        self._lock = threading.Lock()
        self._cache = ParseCache()
        self._snapshot: ManifestSnapshot | None = None

    def snapshot(self) -> ManifestSnapshot:
        current = self._snapshot
        return current if current is not None else self.refresh()

    def refresh(self) -> ManifestSnapshot:
        with self._lock:
            manifests = load_directory(self.directory, cache=self._cache)
            manifests.revision = self.revision()
            self._snapshot = manifests
            return manifests

    def revision(self) -> str | None:
        """HEAD of the work tree holding the manifests, `-dirty` if they have local edits.

        None when the directory is not in a git work tree (or has no commit yet).
        """
        if not self.directory.is_dir():
            return None
        try:
            head = self._git("rev-parse", "--verify", "HEAD", cwd=self.directory).strip()
            # Scoped to the manifests directory: edits elsewhere in the repository do not
            # change what was applied. Untracked manifests are read, so they count.
            status = self._git(
                "status", "--porcelain", "--untracked-files=all", "--", ".", cwd=self.directory
            )
        except GitUnavailableError:
            return None
        return f"{head}-dirty" if status.strip() else head

    def pull(self) -> bool:
        """Bring the checkout to `origin/<branch>`; True when HEAD moved (or first clone).

        Without a remote there is nothing to pull and the answer is always False.
        """
        if self.git_url is None or self.checkout_dir is None:
            return False
        with self._lock:
            checkout = self.checkout_dir
            if not (checkout / ".git").exists():
                checkout.parent.mkdir(parents=True, exist_ok=True)
                self._git(
                    "clone",
                    "--branch",
                    self.git_branch,
                    "--single-branch",
                    "--",
                    self.git_url,
                    str(checkout),
                    cwd=checkout.parent,
                )
                return True
            before = self._head(checkout)
            # The configured URL or branch may have changed since the clone.
            self._git("remote", "set-url", "origin", self.git_url, cwd=checkout)
            branch_ref = f"refs/remotes/origin/{self.git_branch}"
            self._git(
                "fetch",
                "--prune",
                "origin",
                f"+refs/heads/{self.git_branch}:{branch_ref}",
                cwd=checkout,
            )
            self._git("reset", "--hard", branch_ref, cwd=checkout)
            # The checkout is ours: stray files would otherwise be read as manifests.
            self._git("clean", "-ffdx", cwd=checkout)
            return self._head(checkout) != before

    def _head(self, checkout: Path) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "HEAD", cwd=checkout).strip()
        except GitUnavailableError:
            return None

    def _git(self, *args: str, cwd: Path) -> str:
        env = dict(os.environ)
        # Never block on a credential prompt or an editor inside the controller.
        env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", GIT_EDITOR="true", LC_ALL="C")
        command = ["git", *args]
        shown = redact_url(" ".join(command))
        try:
            completed = subprocess.run(
                command,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.git_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitUnavailableError(f"`{shown}` timed out after {self.git_timeout:.0f}s") from exc
        except OSError as exc:
            raise GitUnavailableError(f"`{shown}` could not run: {exc}") from exc
        if completed.returncode != 0:
            stderr = redact_url(completed.stderr.strip()) or "(no output)"
            raise GitUnavailableError(f"`{shown}` failed (exit {completed.returncode}): {stderr}")
        return completed.stdout
