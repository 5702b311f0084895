"""GitManifestSource with real git: revisions, dirty trees, pulls from a local bare remote."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from controller.core.errors import GitUnavailableError, TemporaryError
from controller.manifests.source import GitManifestSource, redact_url

MANIFEST = """\
apiVersion: aliasflow/v1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  model:
    name: iris-classifier
    alias: champion
  target:
    kind: local
"""


def git(cwd: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def write_manifest(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # Local deployments need a port each (validation refuses a shared one).
    port = 20000 + zlib.crc32(name.encode()) % 10000
    (directory / f"{name}.yaml").write_text(MANIFEST.format(name=name) + f"  port: {port}\n")


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def work_tree(tmp_path: Path) -> Path:
    repo = tmp_path / "work"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_manifest(repo / "manifests", "iris-prod")
    (repo / "README.md").write_text("deployments\n")
    commit_all(repo, "first")
    return repo


@pytest.fixture
def remote(tmp_path: Path, work_tree: Path) -> Path:
    """A bare repository reached by file path: a real git remote, no network."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(work_tree, "remote", "add", "origin", str(bare))
    git(work_tree, "push", "-q", "origin", "main")
    return bare


def test_plain_directory_has_no_revision(tmp_path: Path) -> None:
    write_manifest(tmp_path / "manifests", "iris-prod")
    loaded = GitManifestSource(tmp_path / "manifests").refresh()
    assert loaded.revision is None
    assert list(loaded.deployments) == ["iris-prod"]
    assert loaded.complete


def test_revision_is_head_of_the_work_tree(work_tree: Path) -> None:
    loaded = GitManifestSource(work_tree / "manifests").refresh()
    assert loaded.revision == git(work_tree, "rev-parse", "HEAD")
    assert list(loaded.deployments) == ["iris-prod"]


def test_uncommitted_manifest_changes_mark_the_revision_dirty(work_tree: Path) -> None:
    source = GitManifestSource(work_tree / "manifests")
    head = git(work_tree, "rev-parse", "HEAD")

    # An edit outside the manifests directory does not change what is applied.
    (work_tree / "README.md").write_text("edited\n")
    assert source.revision() == head

    (work_tree / "manifests" / "iris-prod.yaml").write_text(
        MANIFEST.format(name="iris-prod") + "  port: 9000\n"
    )
    assert source.revision() == f"{head}-dirty"

    git(work_tree, "checkout", "--", "manifests")
    assert source.revision() == head
    write_manifest(work_tree / "manifests", "iris-canary")  # untracked, but it is read
    assert source.refresh().revision == f"{head}-dirty"


def test_pull_clones_then_follows_new_commits(
    tmp_path: Path, work_tree: Path, remote: Path
) -> None:
    source = GitManifestSource(
        Path("manifests"), git_url=str(remote), checkout_dir=tmp_path / "checkout"
    )
    assert source.pull() is True  # first clone
    first = source.refresh()
    assert first.revision == git(work_tree, "rev-parse", "HEAD")
    assert list(first.deployments) == ["iris-prod"]

    assert source.pull() is False  # nothing new

    write_manifest(work_tree / "manifests", "wine-prod")
    second_sha = commit_all(work_tree, "add wine")
    git(work_tree, "push", "-q", "origin", "main")

    assert source.pull() is True
    second = source.refresh()
    assert second.revision == second_sha
    assert sorted(second.deployments) == ["iris-prod", "wine-prod"]


def test_pull_follows_a_force_push_and_discards_local_edits(
    tmp_path: Path, work_tree: Path, remote: Path
) -> None:
    checkout = tmp_path / "checkout"
    source = GitManifestSource(Path("manifests"), git_url=str(remote), checkout_dir=checkout)
    source.pull()
    (checkout / "manifests" / "stray.yaml").write_text(MANIFEST.format(name="stray"))

    (work_tree / "manifests" / "iris-prod.yaml").unlink()
    write_manifest(work_tree / "manifests", "rewritten")
    git(work_tree, "add", "-A")
    git(work_tree, "commit", "-q", "--amend", "-m", "rewritten history")
    rewritten = git(work_tree, "rev-parse", "HEAD")
    git(work_tree, "push", "-q", "--force", "origin", "main")

    assert source.pull() is True
    loaded = source.refresh()
    assert loaded.revision == rewritten
    assert list(loaded.deployments) == ["rewritten"]


def test_pull_failure_is_a_clear_temporary_error_and_keeps_the_checkout(
    tmp_path: Path, work_tree: Path, remote: Path
) -> None:
    source = GitManifestSource(
        Path("manifests"), git_url=str(remote), checkout_dir=tmp_path / "checkout"
    )
    source.pull()
    shutil.rmtree(remote)

    with pytest.raises(GitUnavailableError) as caught:
        source.pull()
    assert isinstance(caught.value, TemporaryError)
    assert "git fetch" in str(caught.value)
    assert "exit" in str(caught.value)
    # The last good checkout is still there to reconcile from.
    assert list(source.refresh().deployments) == ["iris-prod"]


def test_clone_of_a_missing_remote_or_branch_fails_with_gits_message(
    tmp_path: Path, remote: Path
) -> None:
    missing = GitManifestSource(
        Path("."), git_url=str(tmp_path / "nope.git"), checkout_dir=tmp_path / "c1"
    )
    with pytest.raises(GitUnavailableError, match="git clone"):
        missing.pull()

    wrong_branch = GitManifestSource(
        Path("."), git_url=str(remote), git_branch="release", checkout_dir=tmp_path / "c2"
    )
    with pytest.raises(GitUnavailableError, match="release"):
        wrong_branch.pull()


def test_without_a_remote_pull_does_nothing(work_tree: Path) -> None:
    assert GitManifestSource(work_tree / "manifests").pull() is False


def test_a_remote_needs_a_checkout_dir() -> None:
    with pytest.raises(ValueError, match="checkout_dir"):
        GitManifestSource(Path("manifests"), git_url="https://example.com/x.git")


def test_credentials_in_urls_are_redacted() -> None:
    assert (
        redact_url("fatal: unable to access 'https://user:ghp_token@github.com/a/b.git/'")
        == "fatal: unable to access 'https://***@github.com/a/b.git/'"
    )
    assert redact_url("/srv/git/repo.git") == "/srv/git/repo.git"
