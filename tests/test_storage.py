"""Storage layer against real databases: SQLite always, PostgreSQL when configured.

PostgreSQL tests need `PCDS_TEST_POSTGRES_URL` (CI sets it); each test gets its
own schema, dropped afterwards. "Database down" is simulated for real: a
closed TCP port, a SQLite path whose parent is a regular file, or a
PostgreSQL database that does not exist yet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import pathlib
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.errors import StorageUnavailable
from service.storage import SPOOL_FILENAME, InvocationRecord, Store

POSTGRES_URL = os.environ.get("PCDS_TEST_POSTGRES_URL")
POSTGRES_SKIP = "PCDS_TEST_POSTGRES_URL not set: PostgreSQL storage tests need a server (CI sets it)"
POSTGRES_MARKS = [pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_URL, reason=POSTGRES_SKIP)]
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=POSTGRES_MARKS)]

KEY = b"test-key-0123456789abcdef0123456"
OTHER_KEY = b"another-key-fedcba9876543210fedc"
PATIENT_ID = "patient-7f3a9c-raw-id"


@dataclass(frozen=True)
class Target:
    """Where a store points: URL plus (PostgreSQL only) an isolating schema."""

    url: str
    schema: str | None = None


def _postgres_engine(url: str) -> Engine:
    """An engine to the CI server; fails (never skips) when the variable is set but unreachable."""
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        pytest.fail(f"PCDS_TEST_POSTGRES_URL is set but the server is unreachable: {exc.orig!r}")
    return engine


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target(f"sqlite:///{tmp_path / 'db' / 'pcds.sqlite3'}")
        return
    assert POSTGRES_URL is not None
    schema = f"pcds_test_{uuid.uuid4().hex}"
    admin = _postgres_engine(POSTGRES_URL)
    try:
        yield Target(POSTGRES_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def store(target: Target, tmp_path: pathlib.Path) -> Iterator[Store]:
    s = Store(target.url, KEY, spool_dir=tmp_path / "spool", schema=target.schema)
    yield s
    s.close()


def rows(target: Target, table: str) -> list[dict[str, Any]]:
    """Every row of `table`, read with a separate engine (what is really on disk)."""
    engine = create_engine(target.url)
    name = f'"{target.schema}".{table}' if target.schema else table
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(f"SELECT * FROM {name}")).mappings()]
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def blocked_sqlite(tmp_path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """A SQLite URL that cannot be opened (its parent is a file) and that blocker file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    return f"sqlite:///{blocker / 'pcds.sqlite3'}", blocker


def unblock(blocker: pathlib.Path) -> None:
    blocker.unlink()
    blocker.mkdir()


def record(**overrides: Any) -> InvocationRecord:
    values: dict[str, Any] = {
        "service_id": "pgx-clopidogrel",
        "hook": "order-select",
        "hook_instance": str(uuid.uuid4()),
        "patient_id": PATIENT_ID,
        "rules_fired": ["cyp2c19-pm"],
        "cards": [(str(uuid.uuid4()), "cyp2c19-pm", "MedicationRequest/draft-1")],
        "duration_ms": 12.5,
        "outcome": "ok",
        "http_status": 200,
        "ruleset_version": "2024.1",
    }
    values.update(overrides)
    return InvocationRecord(**values)


# ------------------------------------------------------------------------ schema


def test_schema_created_and_reopen_is_idempotent(target: Target) -> None:
    first = Store(target.url, KEY, schema=target.schema)
    first.record_invocation(record())
    first.close()

    engine = create_engine(target.url)
    try:
        tables = set(inspect(engine).get_table_names(schema=target.schema))
    finally:
        engine.dispose()
    assert {"schema_version", "invocations", "cards_issued", "feedback"} <= tables
    assert [r["version"] for r in rows(target, "schema_version")] == [1]

    again = Store(target.url, KEY, schema=target.schema)
    try:
        assert again.ping()
        assert len(again.invocations()) == 1
    finally:
        again.close()
    assert [r["version"] for r in rows(target, "schema_version")] == [1]


# ------------------------------------------------------------------- invocations


def test_invocation_round_trip_and_patient_id_only_hashed(store: Store, target: Target) -> None:
    card_uuid = str(uuid.uuid4())
    sent_at = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    store.record_invocation(
        record(cards=[(card_uuid, "cyp2c19-pm", "MedicationRequest/draft-1")], received_at=sent_at)
    )

    [inv] = store.invocations()
    expected_hash = hmac.new(KEY, PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    assert inv["patient_hash"] == expected_hash == store.hash_patient_id(PATIENT_ID)
    assert inv["received_at"] == sent_at and inv["received_at"].tzinfo == UTC
    assert inv["rules_fired"] == ["cyp2c19-pm"]
    assert inv["card_uuids"] == [card_uuid]
    assert (inv["service_id"], inv["hook"], inv["outcome"], inv["http_status"]) == (
        "pgx-clopidogrel",
        "order-select",
        "ok",
        200,
    )
    assert inv["duration_ms"] == 12.5 and inv["ruleset_version"] == "2024.1"

    other = Store("sqlite://", OTHER_KEY)
    try:
        assert other.hash_patient_id(PATIENT_ID) != expected_hash
    finally:
        other.close()

    raw = rows(target, "invocations") + rows(target, "cards_issued")
    assert raw and all(PATIENT_ID not in str(value) for row in raw for value in row.values())
    [issued] = rows(target, "cards_issued")
    assert issued["card_uuid"] == card_uuid and issued["draft_order_ref"] == "MedicationRequest/draft-1"


def test_sqlite_file_never_contains_raw_patient_id(tmp_path: pathlib.Path) -> None:
    db_dir = tmp_path / "db"
    s = Store(f"sqlite:///{db_dir / 'pcds.sqlite3'}", KEY)
    s.record_invocation(record())
    s.close()
    files = [p for p in db_dir.iterdir() if p.is_file()]
    assert files and all(PATIENT_ID.encode() not in p.read_bytes() for p in files)


def test_invocations_newest_first_and_rejected_record_is_atomic(store: Store) -> None:
    card_uuid = str(uuid.uuid4())
    old = datetime(2024, 1, 1, tzinfo=UTC)
    store.record_invocation(record(hook_instance="old", received_at=old, cards=[(card_uuid, "r", None)]))
    store.record_invocation(record(hook_instance="new", received_at=old + timedelta(hours=1), cards=[]))
    # A duplicate card uuid is rejected by the database: dropped, not raised, nothing half-written.
    store.record_invocation(record(hook_instance="dup", cards=[(card_uuid, "r", None)]))
    assert [i["hook_instance"] for i in store.invocations()] == ["new", "old"]
    assert [i["hook_instance"] for i in store.invocations(limit=1)] == ["new"]


def test_concurrent_writers(store: Store) -> None:
    """One Store shared by worker threads, as in a threaded WSGI server."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                store.record_invocation(record(hook_instance=f"t{n}-{i}"))
                store.card_issued_for("cyp2c19-pm", "MedicationRequest/draft-1")
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.invocations(limit=1000)) == 80


def test_naive_received_at_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record(received_at=datetime(2024, 1, 1))


def test_card_issued_for(store: Store) -> None:
    issued_at = datetime.now(UTC) - timedelta(minutes=5)
    store.record_invocation(
        record(received_at=issued_at, cards=[(str(uuid.uuid4()), "rule-a", "MedicationRequest/1")])
    )
    store.record_invocation(
        record(hook="order-sign", cards=[(str(uuid.uuid4()), "rule-s", "MedicationRequest/2")])
    )

    assert store.card_issued_for("rule-a", "MedicationRequest/1")
    assert store.card_issued_for("rule-a", "MedicationRequest/1", since=issued_at - timedelta(seconds=1))
    assert not store.card_issued_for("rule-a", "MedicationRequest/1", since=issued_at + timedelta(seconds=1))
    assert not store.card_issued_for("rule-b", "MedicationRequest/1")
    assert not store.card_issued_for("rule-a", "MedicationRequest/9")
    assert not store.card_issued_for("rule-a", "MedicationRequest/1", hook="order-sign")
    assert store.card_issued_for("rule-s", "MedicationRequest/2", hook="order-sign")
    assert not store.card_issued_for("rule-s", "MedicationRequest/2")


def test_known_cards(store: Store) -> None:
    mine = str(uuid.uuid4())
    store.record_invocation(record(cards=[(mine, "rule-a", None)]))
    assert store.known_cards("pgx-clopidogrel", [mine, str(uuid.uuid4())]) == {mine}
    assert store.known_cards("other-service", [mine]) == set()


# ---------------------------------------------------------------------- feedback


def test_feedback_round_trip(store: Store) -> None:
    card = str(uuid.uuid4())
    items: list[dict[str, Any]] = [
        {
            "card": card,
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "sugg-1"}, {"id": "sugg-2"}],
            "outcomeTimestamp": "2024-05-01T12:00:00Z",
        },
        {
            "card": card,
            "outcome": "overridden",
            "overrideReason": {
                "reason": {
                    "code": "patient-preference",
                    "system": "http://example.org/reasons",
                    "display": "Patient preference",
                },
                "userComment": "discussed with the patient",
            },
            "outcomeTimestamp": "2024-05-01T12:05:00+08:00",
        },
    ]
    before = datetime.now(UTC)
    assert store.record_feedback("pgx-clopidogrel", items) == 2

    accepted, overridden = store.feedback_for_card(card)
    assert accepted["outcome"] == "accepted"
    assert accepted["accepted_suggestions"] == ["sugg-1", "sugg-2"]
    assert accepted["outcome_timestamp"] == "2024-05-01T12:00:00Z"
    assert accepted["override_reason_code"] is None and accepted["user_comment"] is None
    assert overridden["outcome"] == "overridden" and overridden["accepted_suggestions"] == []
    assert (
        overridden["override_reason_code"],
        overridden["override_reason_system"],
        overridden["override_reason_display"],
        overridden["user_comment"],
        overridden["outcome_timestamp"],
    ) == (
        "patient-preference",
        "http://example.org/reasons",
        "Patient preference",
        "discussed with the patient",
        "2024-05-01T12:05:00+08:00",
    )
    for row in (accepted, overridden):
        assert row["service_id"] == "pgx-clopidogrel" and row["card_uuid"] == card
        assert row["received_at"].tzinfo == UTC and row["received_at"] >= before - timedelta(seconds=1)
    assert store.feedback_for_card(str(uuid.uuid4())) == []


def test_feedback_is_all_or_nothing(store: Store) -> None:
    card = str(uuid.uuid4())
    good = {"card": card, "outcome": "accepted", "outcomeTimestamp": "2024-05-01T12:00:00Z"}
    bad = {"card": card, "outcome": None, "outcomeTimestamp": "2024-05-01T12:00:00Z"}  # NOT NULL violation
    with pytest.raises(StorageUnavailable, match="feedback could not be stored; retry"):
        store.record_feedback("pgx-clopidogrel", [good, bad])
    assert store.feedback_for_card(card) == []


def test_feedback_on_unreachable_postgres_raises(tmp_path: pathlib.Path) -> None:
    # Plain postgresql:// also checks the rewrite to psycopg 3 (psycopg2 is not installed).
    s = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/test", KEY, spool_dir=tmp_path)
    try:
        assert not s.ping()
        with pytest.raises(StorageUnavailable, match="feedback could not be stored; retry"):
            s.record_feedback("svc", [{"card": "c", "outcome": "accepted"}])
        assert not s.card_issued_for("rule-a", "MedicationRequest/1")
        with pytest.raises(StorageUnavailable):
            s.feedback_for_card("c")
    finally:
        s.close()


def test_feedback_on_unreachable_sqlite_raises(tmp_path: pathlib.Path) -> None:
    url, _ = blocked_sqlite(tmp_path)
    s = Store(url, KEY)
    try:
        assert not s.ping()
        with pytest.raises(StorageUnavailable, match="feedback could not be stored; retry"):
            s.record_feedback("svc", [{"card": "c", "outcome": "accepted"}])
    finally:
        s.close()


# ------------------------------------------------------------------------- spool


def assert_spool_is_hashed(spool_file: pathlib.Path, count: int) -> None:
    content = spool_file.read_text(encoding="utf-8")
    assert PATIENT_ID not in content
    entries = [json.loads(line) for line in content.splitlines()]
    assert len(entries) == count
    assert all(e["patient_hash"] == hmac.new(KEY, PATIENT_ID.encode(), hashlib.sha256).hexdigest() for e in entries)


def test_record_invocation_spools_while_sqlite_down_and_flushes_later(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, blocker = blocked_sqlite(tmp_path)
    spool_dir = tmp_path / "spool"
    s = Store(url, KEY, spool_dir=spool_dir)
    try:
        s.record_invocation(record(hook_instance="a"))  # must not raise
        s.record_invocation(record(hook_instance="b"))
        assert_spool_is_hashed(spool_dir / SPOOL_FILENAME, 2)
        assert s.flush_spool() == 0  # still down: kept

        unblock(blocker)
        assert s.flush_spool() == 2
        assert sorted(i["hook_instance"] for i in s.invocations()) == ["a", "b"]
        assert (spool_dir / SPOOL_FILENAME).read_text() == ""
        assert s.flush_spool() == 0
    finally:
        s.close()
    assert "spooled" in caplog.text
    assert PATIENT_ID not in caplog.text and s.hash_patient_id(PATIENT_ID) not in caplog.text


def test_memory_spool_without_spool_dir(tmp_path: pathlib.Path) -> None:
    url, blocker = blocked_sqlite(tmp_path)
    s = Store(url, KEY)
    try:
        s.record_invocation(record(hook_instance="a"))
        unblock(blocker)
        assert s.flush_spool() == 1
        assert [i["hook_instance"] for i in s.invocations()] == ["a"]
    finally:
        s.close()
    # Nothing of the patient was written next to the database either.
    assert all(PATIENT_ID.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_record_invocation_flushes_spool_opportunistically(tmp_path: pathlib.Path) -> None:
    url, blocker = blocked_sqlite(tmp_path)
    s = Store(url, KEY, spool_dir=tmp_path / "spool", retry_interval=0)
    try:
        s.record_invocation(record(hook_instance="while-down"))
        unblock(blocker)
        s.record_invocation(record(hook_instance="after"))
        assert [i["hook_instance"] for i in s.invocations()] == ["after", "while-down"]
        assert (tmp_path / "spool" / SPOOL_FILENAME).read_text() == ""
    finally:
        s.close()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason=POSTGRES_SKIP)
def test_record_invocation_spools_while_postgres_down_and_flushes_later(tmp_path: pathlib.Path) -> None:
    assert POSTGRES_URL is not None
    database = f"pcds_test_{uuid.uuid4().hex}"
    url = make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)
    admin = _postgres_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    spool_dir = tmp_path / "spool"
    s = Store(url, KEY, spool_dir=spool_dir)  # database does not exist yet: "down"
    try:
        s.record_invocation(record(hook_instance="a"))
        assert_spool_is_hashed(spool_dir / SPOOL_FILENAME, 1)

        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        assert s.flush_spool() == 1
        [inv] = s.invocations()
        assert inv["hook_instance"] == "a" and inv["patient_hash"] != PATIENT_ID
    finally:
        s.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.engine.dispose()
