"""Shared fixtures: the app on a temporary SQLite database, example requests, a fake FHIR server."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from service.app import create_app
from service.config import PROJECT_ROOT, Settings, load_settings

from tests.fhir_fake import FakeFhirServer, Route, bundle, fake_fhir_server

EXAMPLES = PROJECT_ROOT / "examples"
POSTGRES_ENV = "PCDS_TEST_POSTGRES_URL"


def example_request(name: str) -> dict[str, Any]:
    """A copy of examples/requests/<name>.json."""
    return copy.deepcopy(json.loads((EXAMPLES / "requests" / f"{name}.json").read_text(encoding="utf-8")))


def example_patient(name: str) -> list[dict[str, Any]]:
    data = json.loads((EXAMPLES / "patients" / f"{name}.json").read_text(encoding="utf-8"))
    return [e["resource"] for e in data["entry"]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {"data_dir": tmp_path / "data", "reload_interval_seconds": 0, "audit_hash_key": "test-key"},
        environ={},
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    application = create_app(settings)
    yield application
    state = application.extensions["precision_cds"]
    state.holder.stop()
    state.store.close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def store(app: Any) -> Any:
    return app.extensions["precision_cds"].store


@pytest.fixture
def fhir() -> Iterator[FakeFhirServer]:
    with fake_fhir_server({}) as server:
        yield server


__all__ = ["example_request", "example_patient", "Route", "bundle", "POSTGRES_ENV"]


def pytest_configure(config: Any) -> None:
    """In CI the PostgreSQL tests must run, never skip: fail early if the URL is missing."""
    if os.environ.get("CI") == "true" and not os.environ.get(POSTGRES_ENV):
        raise pytest.UsageError(f"CI=true but {POSTGRES_ENV} is not set: .ci/run must start PostgreSQL and export it")
