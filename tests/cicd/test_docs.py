"""The generated reference pages equal a fresh generation, so they cannot drift.

A change to `ControllerSettings`, `ServerSettings` or the manifest model that is not
followed by `make docs` fails here, with the command to run in the message.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_current(gen_docs: ModuleType) -> None:
    for path, text in gen_docs.generate().items():
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing; run `make docs`"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is out of date; run `make docs`"
        )


def test_every_setting_is_documented(gen_docs: ModuleType) -> None:
    from controller.service.settings import ControllerSettings

    page = gen_docs.render_settings()
    for name in ControllerSettings.model_fields:
        env = (
            "MLFLOW_TRACKING_URI" if name == "mlflow_tracking_uri" else f"ALIASFLOW_{name.upper()}"
        )
        assert f"`{env}`" in page


def test_every_manifest_field_is_documented(gen_docs: ModuleType) -> None:
    from controller.core.manifest import json_schema

    page = gen_docs.render_manifest_reference()
    schema = json_schema()
    for definition in [schema, *schema["$defs"].values()]:
        for key in definition.get("properties", {}):
            assert f"| `{key}` |" in page, key


def test_check_mode_reports_a_stale_page(
    gen_docs: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text("old\n")
    monkeypatch.setattr(gen_docs, "generate", lambda: {stale: "new\n"})
    monkeypatch.setattr(gen_docs, "ROOT", tmp_path)
    assert gen_docs.main(["--check"]) == 1
    assert stale.read_text() == "old\n"
    assert gen_docs.main([]) == 0
    assert stale.read_text() == "new\n"
