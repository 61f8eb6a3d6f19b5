"""docs/openapi.json is valid OpenAPI, is what the app serves, and covers every API route."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def export():
    spec = importlib.util.spec_from_file_location("openapi_export", ROOT / "scripts" / "openapi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def committed():
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_the_committed_document_is_valid_openapi():
    validate(committed())


def test_the_committed_document_is_what_the_app_serves(export):
    served = export.served()
    assert served == committed(), "docs/openapi.json is out of date: run `make openapi`"
    assert export.render(served) == COMMITTED.read_text(encoding="utf-8")


def test_check_mode_reports_a_stale_copy(export, tmp_path, monkeypatch):
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(export, "DOCUMENT", stale)
    assert export.main(["--check"]) == 1
    monkeypatch.setattr(export, "DOCUMENT", COMMITTED)
    assert export.main(["--check"]) == 0


def test_every_api_route_the_app_serves_is_documented(export):
    from webhook_receiver import create_app
    from webhook_receiver.settings import ReceiverSettings

    app = create_app(ReceiverSettings(database_url="postgresql://127.0.0.1:1/unused"))
    paths = committed()["paths"]
    routes = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")]
    assert len(routes) >= 20  # the url map was read, not an empty one
    for rule in routes:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths.get(path, {}), f"{method} {path} is not in the document"
