"""Feedback is validated and stored (or refused so the EHR retries); every invocation is audited."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from service.app import create_app
from tests.conftest import POSTGRES_ENV, example_request

SIGN = "/cds-services/precision-cds-order-sign"
FEEDBACK = "/cds-services/precision-cds-order-sign/feedback"
NOW = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _card(client: Any) -> dict[str, Any]:
    r = client.post(SIGN, data=json.dumps(example_request("zhang-wei-acs-cyp2c19-pm.order-sign")), content_type="application/json")
    assert r.status_code == 200
    return r.get_json()["cards"][0]


def test_accepted_feedback_is_stored_and_read_back(client: Any, store: Any) -> None:
    card = _card(client)
    sug = card["suggestions"][0]["uuid"]
    r = client.post(FEEDBACK, json={"feedback": [{"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": sug}], "outcomeTimestamp": NOW}]})
    assert r.status_code == 200
    rows = store.feedback_for_card(card["uuid"])
    assert len(rows) == 1
    assert rows[0]["outcome"] == "accepted"
    assert rows[0]["accepted_suggestions"] == [sug]


def test_overridden_feedback_with_reason_is_stored(client: Any, store: Any) -> None:
    card = _card(client)
    reason = card["overrideReasons"][1]
    r = client.post(FEEDBACK, json={"feedback": [{
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": NOW,
        "overrideReason": {"reason": {"code": reason["code"], "system": reason["system"], "display": reason["display"]}, "userComment": "recent GI bleed"},
    }]})
    assert r.status_code == 200
    row = store.feedback_for_card(card["uuid"])[0]
    assert row["override_reason_code"] == reason["code"]
    assert row["user_comment"] == "recent GI bleed"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"outcome": "accepted", "acceptedSuggestions": [{"id": "s"}], "outcomeTimestamp": NOW}, "feedback[0].card"),
        ({"card": "c", "outcome": "ignored", "outcomeTimestamp": NOW}, "feedback[0].outcome"),
        ({"card": "c", "outcome": "accepted", "outcomeTimestamp": NOW}, "feedback[0].acceptedSuggestions"),
        ({"card": "c", "outcome": "overridden", "outcomeTimestamp": NOW, "overrideReason": {}}, "feedback[0].overrideReason"),
        ({"card": "c", "outcome": "overridden"}, "feedback[0].outcomeTimestamp"),
        ({"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp"),
    ],
)
def test_invalid_feedback_is_400_naming_the_field(client: Any, entry: dict[str, Any], field: str) -> None:
    r = client.post(FEEDBACK, json={"feedback": [entry]})
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == [field]


def test_feedback_when_the_database_is_down_is_503_not_lost_silently(settings: Any) -> None:
    app = create_app(replace(settings, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none"))
    try:
        r = app.test_client().post(FEEDBACK, json={"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": NOW}]})
        assert r.status_code == 503
        # invocations still answer with cards while the database is down
        r = app.test_client().post(SIGN, data=json.dumps(example_request("zhang-wei-acs-cyp2c19-pm.order-sign")), content_type="application/json")
        assert r.status_code == 200 and len(r.get_json()["cards"]) == 1
    finally:
        app.extensions["precision_cds"].store.close()


def test_invocation_is_audited_with_a_keyed_hash_of_the_patient(client: Any, store: Any) -> None:
    card = _card(client)
    row = store.invocations(limit=1)[0]
    assert row["service_id"] == "precision-cds-order-sign"
    assert row["hook"] == "order-sign"
    assert row["rules_fired"] == ["clopidogrel-cyp2c19-acs-pci-poor"]
    assert row["card_uuids"] == [card["uuid"]]
    assert row["outcome"] == "ok" and row["http_status"] == 200
    assert row["duration_ms"] > 0
    assert row["patient_hash"] == store.hash_patient_id("zhang-wei-acs-cyp2c19-pm")
    assert "zhang-wei" not in json.dumps(row, default=str)


@pytest.mark.postgres
def test_service_runs_on_postgresql(settings: Any) -> None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} not set: PostgreSQL tests need a server (CI sets it)")
    app = create_app(replace(settings, database_url=url))
    try:
        client = app.test_client()
        card = _card(client)
        r = client.post(FEEDBACK, json={"feedback": [{"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}], "outcomeTimestamp": NOW}]})
        assert r.status_code == 200
        store = app.extensions["precision_cds"].store
        assert store.feedback_for_card(card["uuid"])[0]["outcome"] == "accepted"
        assert any(card["uuid"] in row["card_uuids"] for row in store.invocations(limit=50))
    finally:
        app.extensions["precision_cds"].store.close()
