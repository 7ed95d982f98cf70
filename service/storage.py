"""Storage of invocations, issued cards and feedback (SQLAlchemy Core).

Two kinds of data with different failure rules live here:

* Invocation records (audit/analytics) must never break a CDS response, so
  `Store.record_invocation` never raises because the database is down: the
  record is spooled (JSON lines on disk, or a bounded in-memory deque) and
  written later by `Store.flush_spool`.
* Feedback is what the EHR asked us to remember, so it is never dropped
  silently: `Store.record_feedback` is all-or-nothing and raises
  `StorageUnavailable` (HTTP 503, the EHR retries) when it cannot be stored.

Patient ids are stored and spooled only as a keyed HMAC-SHA256, and log lines
name error classes and SQLSTATEs only -- never patient data, parameters or the
database URL (which may carry a password).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from service.errors import StorageUnavailable

log = logging.getLogger(__name__)

#: Bound of the in-memory spool used when no spool directory is configured.
MEMORY_SPOOL_MAX = 10_000
#: Name of the JSON-lines spool file inside `spool_dir`.
SPOOL_FILENAME = "invocations.spool.jsonl"
#: Arbitrary constant key for the PostgreSQL advisory lock serialising migrations.
_MIGRATION_LOCK_KEY = 0x70636473  # "pcds"


# --------------------------------------------------------------------------- types


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type, so values are stored as naive UTC there
    (which keeps string comparison correct) and re-tagged as UTC on read.
    Naive datetimes are rejected: guessing their zone would corrupt the audit.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime; pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONList(TypeDecorator[list[str]]):
    """A list of strings kept as JSON text (portable; no JSON column needed)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(list(value), separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> list[str] | None:
        if value is None:
            return None
        loaded: list[str] = json.loads(value)
        return loaded


# -------------------------------------------------------------------------- schema

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

invocations = Table(
    "invocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("service_id", String, nullable=False),
    Column("hook", String, nullable=False),
    Column("hook_instance", String, nullable=False),
    Column("patient_hash", String(64), nullable=True),
    Column("rules_fired", JSONList, nullable=False),
    Column("card_uuids", JSONList, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("outcome", String, nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("ruleset_version", String, nullable=True),
    Index("ix_invocations_received_at", "received_at"),
    Index("ix_invocations_hook_instance", "hook_instance"),
)

cards_issued = Table(
    "cards_issued",
    metadata,
    Column("card_uuid", String, primary_key=True),
    Column(
        "invocation_id",
        Integer,
        ForeignKey("invocations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("rule_id", String, nullable=False),
    Column("service_id", String, nullable=False),
    Column("hook_instance", String, nullable=False),
    Column("draft_order_ref", String, nullable=True),
    Column("issued_at", UTCDateTime, nullable=False),
    Index("ix_cards_issued_rule_draft", "rule_id", "draft_order_ref"),
    Index("ix_cards_issued_invocation_id", "invocation_id"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String, nullable=False),
    Column("card_uuid", String, nullable=False),
    Column("outcome", String, nullable=False),
    Column("accepted_suggestions", JSONList, nullable=False),
    Column("override_reason_code", String, nullable=True),
    Column("override_reason_system", String, nullable=True),
    Column("override_reason_display", String, nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("outcome_timestamp", String, nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_feedback_card_uuid", "card_uuid"),
)


def _migrate_v1(conn: Connection) -> None:
    """Version 1: the initial tables."""
    metadata.create_all(conn, tables=[invocations, cards_issued, feedback], checkfirst=True)


#: Ordered migrations; append `(n + 1, callable)` to evolve the schema.
#: Each runs inside the migration transaction and must not depend on `metadata`
#: matching a later version (write explicit DDL for changes after v1).
MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _migrate_v1),)


# ------------------------------------------------------------------------- records


@dataclass(frozen=True)
class InvocationRecord:
    """What one hook call did, as handed to `Store.record_invocation`.

    `patient_id` is the raw id; the store hashes it before it touches disk.
    `cards` are `(card_uuid, rule_id, draft_order_ref)` tuples.
    """

    service_id: str
    hook: str
    hook_instance: str
    patient_id: str | None
    rules_fired: list[str]
    cards: list[tuple[str, str, str | None]]
    duration_ms: float
    outcome: str
    http_status: int
    ruleset_version: str | None = None
    received_at: datetime | None = None  # None means "now" (UTC) at record time

    def __post_init__(self) -> None:
        if self.received_at is not None and self.received_at.utcoffset() is None:
            raise ValueError("received_at must be timezone-aware")


class _SpoolEntry(TypedDict):
    """An invocation ready to insert: JSON-serialisable, patient id already hashed."""

    service_id: str
    hook: str
    hook_instance: str
    patient_hash: str | None
    rules_fired: list[str]
    cards: list[tuple[str, str, str | None]]
    duration_ms: float
    outcome: str
    http_status: int
    ruleset_version: str | None
    received_at: str  # ISO 8601, UTC


# --------------------------------------------------------------------------- store


def _normalise_url(url: str) -> URL:
    """Parse `url`, pinning plain PostgreSQL URLs to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means "the database cannot be reached/written now" (retryable)."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)):
        return True
    return bool(getattr(exc, "connection_invalidated", False))


def _describe(exc: BaseException) -> str:
    """A log-safe description: class names and SQLSTATE / SQLite error name only.

    Messages are deliberately omitted: driver messages can echo row values.
    """
    orig = getattr(exc, "orig", None)
    parts = [type(exc).__name__]
    if orig is not None:
        parts.append(type(orig).__name__)
        for attr in ("sqlstate", "sqlite_errorname"):
            code = getattr(orig, attr, None)
            if isinstance(code, str) and code:
                parts.append(code)
    return "/".join(parts)


class Store:
    """The service's only door to the database; safe to share between threads."""

    def __init__(
        self,
        url: str,
        hash_key: bytes,
        spool_dir: pathlib.Path | None = None,
        *,
        schema: str | None = None,
        retry_interval: float = 5.0,
    ) -> None:
        """Open the engine and migrate the schema if the database is reachable.

        An unreachable database does not prevent start-up (invocations spool,
        feedback answers 503); the migration is retried before the next use.
        `schema` places the tables in a PostgreSQL schema (used for test
        isolation). `retry_interval` rate-limits spool flushes and, after a
        connection failure, direct write attempts from `record_invocation`.
        """
        if not hash_key:
            raise ValueError("hash_key must not be empty")
        self._hash_key = bytes(hash_key)
        self._retry_interval = retry_interval
        self._url = _normalise_url(url)
        backend = self._url.get_backend_name()
        if schema is not None and backend != "postgresql":
            raise ValueError("schema is only supported on PostgreSQL")
        self._schema = schema
        self._engine = self._create_engine(self._url, schema)

        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._spool_lock = threading.Lock()
        self._spool_path: pathlib.Path | None = None
        self._memory_spool: collections.deque[_SpoolEntry] = collections.deque(maxlen=MEMORY_SPOOL_MAX)
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)
            self._spool_path = spool_dir / SPOOL_FILENAME
            self._spool_lock_path = spool_dir / (SPOOL_FILENAME + ".lock")
        self._next_flush_at = 0.0  # time.monotonic() before which no automatic flush
        self._down_until = 0.0  # time.monotonic() before which writes go to the spool

        try:
            self._ensure_schema()
        except SQLAlchemyError as exc:
            if not _is_unavailable(exc):
                self._engine.dispose()
                raise
            log.warning("database unavailable at start-up (%s); will retry", _describe(exc))

    # ------------------------------------------------------------------ engine

    @staticmethod
    def _create_engine(url: URL, schema: str | None) -> Engine:
        """Engine with pre-ping; SQLite gets WAL and real transactions, PostgreSQL a short connect timeout."""
        options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
        if schema is not None:
            options["execution_options"] = {"schema_translate_map": {None: schema}}
        backend = url.get_backend_name()
        if backend == "sqlite":
            database = url.database
            options["connect_args"] = {"check_same_thread": False}
            if database in (None, "", ":memory:"):
                options["poolclass"] = StaticPool  # one shared in-memory database
            else:
                try:
                    pathlib.Path(database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    log.warning("cannot create the SQLite directory (%s)", type(exc).__name__)
        elif backend == "postgresql":
            options["connect_args"] = {"connect_timeout": 3}
        engine = create_engine(url, **options)
        if backend == "sqlite":
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        """A connection inside a transaction; `write` takes SQLite's write lock up front."""
        self._ensure_schema()
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(pcds_write=True)
            with conn.begin():
                yield conn

    def _ensure_schema(self) -> None:
        """Run pending migrations once per process; raises SQLAlchemyError if it cannot."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            if self._url.get_backend_name() == "sqlite" and self._url.database not in (None, "", ":memory:"):
                with contextlib.suppress(OSError):
                    pathlib.Path(str(self._url.database)).parent.mkdir(parents=True, exist_ok=True)
            with self._engine.connect() as conn:
                conn.execution_options(pcds_write=True)
                with conn.begin():
                    self._migrate(conn)
            self._schema_ready = True

    def _migrate(self, conn: Connection) -> None:
        """Apply every migration newer than the recorded version, in order."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            if self._schema is not None:
                quoted = conn.dialect.identifier_preparer.quote_schema(self._schema)
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(select(func.max(schema_version.c.version))).scalar_one_or_none() or 0
        latest = MIGRATIONS[-1][0]
        if current > latest:
            log.warning("database schema version %d is newer than this code (%d)", current, latest)
        for version, migration in MIGRATIONS:
            if version > current:
                migration(conn)
                conn.execute(schema_version.insert().values(version=version, applied_at=datetime.now(UTC)))
                log.info("applied storage migration %d", version)

    # ----------------------------------------------------------------- hashing

    def hash_patient_id(self, patient_id: str) -> str:
        """Keyed HMAC-SHA256 (hex): links one patient's invocations without storing the id."""
        return hmac.new(self._hash_key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------- invocations

    def record_invocation(self, record: InvocationRecord) -> None:
        """Store one invocation; never raises because the database is unavailable.

        On failure the record (patient id already hashed) goes to the spool and
        is written by a later `flush_spool`. Rejected records (e.g. a duplicate
        card uuid) are logged and dropped: retrying them cannot succeed.
        """
        entry = self._to_entry(record)
        now = time.monotonic()
        if now < self._down_until:
            self._spool(entry)
            return
        if now >= self._next_flush_at and self._spool_nonempty():
            self._next_flush_at = now + self._retry_interval
            self.flush_spool()
            if time.monotonic() < self._down_until:
                self._spool(entry)
                return
        try:
            with self._transaction(write=True) as conn:
                self._insert(conn, entry)
        except SQLAlchemyError as exc:
            if _is_unavailable(exc):
                self._mark_down()
                log.warning("database unavailable (%s); invocation spooled", _describe(exc))
                self._spool(entry)
            else:
                log.error("invocation rejected by the database (%s); dropped", _describe(exc))

    def flush_spool(self) -> int:
        """Write spooled invocations, oldest first; returns how many were written.

        Stops at the first connection failure and keeps the rest; never raises.
        Each record is its own transaction, so a record that the database
        rejects (e.g. already written before a crash) is dropped without
        blocking the others.
        """
        with self._spool_guard():
            entries = self._read_spool()
            if not entries:
                return 0
            written = 0
            done = 0
            try:
                for entry in entries:
                    try:
                        with self._transaction(write=True) as conn:
                            self._insert(conn, entry)
                        written += 1
                    except SQLAlchemyError as exc:
                        if _is_unavailable(exc):
                            raise
                        log.error("spooled invocation rejected by the database (%s); dropped", _describe(exc))
                    done += 1
            except SQLAlchemyError as exc:
                self._mark_down()
                log.warning(
                    "database unavailable (%s); %d spooled invocation(s) kept",
                    _describe(exc),
                    len(entries) - done,
                )
            self._rewrite_spool(entries[done:])
        if written:
            log.info("flushed %d spooled invocation(s)", written)
        return written

    def invocations(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest invocations first (tests, admin). Raises StorageUnavailable."""
        query = select(invocations).order_by(invocations.c.received_at.desc(), invocations.c.id.desc()).limit(limit)
        try:
            with self._transaction(write=False) as conn:
                return [dict(row) for row in conn.execute(query).mappings()]
        except SQLAlchemyError as exc:
            log.warning("cannot read invocations (%s)", _describe(exc))
            raise StorageUnavailable("invocations could not be read; retry") from exc

    def card_issued_for(
        self,
        rule_id: str,
        draft_order_ref: str,
        hook: str = "order-select",
        since: datetime | None = None,
    ) -> bool:
        """Whether `rule_id` already issued a card for this draft order at `hook`.

        Used to suppress duplicates at order-sign. Never raises: when the
        database is unavailable it answers False, because showing a card
        twice is safer than hiding one.
        """
        query = (
            select(cards_issued.c.card_uuid)
            .join(invocations, invocations.c.id == cards_issued.c.invocation_id)
            .where(
                cards_issued.c.rule_id == rule_id,
                cards_issued.c.draft_order_ref == draft_order_ref,
                invocations.c.hook == hook,
            )
            .limit(1)
        )
        if since is not None:
            query = query.where(cards_issued.c.issued_at >= since)
        try:
            with self._transaction(write=False) as conn:
                return conn.execute(query).first() is not None
        except SQLAlchemyError as exc:
            log.warning("duplicate-card lookup failed (%s); assuming none", _describe(exc))
            return False

    def known_cards(self, service_id: str, card_uuids: list[str]) -> set[str]:
        """Which of `card_uuids` this service issued (feedback validation). Raises StorageUnavailable."""
        if not card_uuids:
            return set()
        query = select(cards_issued.c.card_uuid).where(
            cards_issued.c.service_id == service_id,
            cards_issued.c.card_uuid.in_(set(card_uuids)),
        )
        try:
            with self._transaction(write=False) as conn:
                return set(conn.execute(query).scalars())
        except SQLAlchemyError as exc:
            log.warning("cannot look up issued cards (%s)", _describe(exc))
            raise StorageUnavailable("issued cards could not be read; retry") from exc

    # ---------------------------------------------------------------- feedback

    def record_feedback(self, service_id: str, items: list[dict[str, Any]]) -> int:
        """Store validated CDS Hooks feedback entries in one transaction; returns the count.

        All or nothing: any database error raises StorageUnavailable so the
        EHR retries -- feedback is never dropped silently.
        """
        received_at = datetime.now(UTC)
        rows = [self._feedback_row(service_id, item, received_at) for item in items]
        if not rows:
            return 0
        try:
            with self._transaction(write=True) as conn:
                conn.execute(feedback.insert(), rows)
        except SQLAlchemyError as exc:
            log.warning("feedback not stored (%s)", _describe(exc))
            raise StorageUnavailable("feedback could not be stored; retry") from exc
        return len(rows)

    def feedback_for_card(self, card_uuid: str) -> list[dict[str, Any]]:
        """Feedback received for one card, oldest first. Raises StorageUnavailable."""
        query = select(feedback).where(feedback.c.card_uuid == card_uuid).order_by(feedback.c.id)
        try:
            with self._transaction(write=False) as conn:
                return [dict(row) for row in conn.execute(query).mappings()]
        except SQLAlchemyError as exc:
            log.warning("cannot read feedback (%s)", _describe(exc))
            raise StorageUnavailable("feedback could not be read; retry") from exc

    @staticmethod
    def _feedback_row(service_id: str, item: dict[str, Any], received_at: datetime) -> dict[str, Any]:
        override = item.get("overrideReason") or {}
        reason = override.get("reason") or {}
        return {
            "service_id": service_id,
            "card_uuid": item["card"],
            "outcome": item["outcome"],
            "accepted_suggestions": [s["id"] for s in item.get("acceptedSuggestions") or []],
            "override_reason_code": reason.get("code"),
            "override_reason_system": reason.get("system"),
            "override_reason_display": reason.get("display"),
            "user_comment": override.get("userComment"),
            "outcome_timestamp": item.get("outcomeTimestamp"),
            "received_at": received_at,
        }

    # ------------------------------------------------------------------ health

    def ping(self) -> bool:
        """Whether the database answers and the schema is in place (health check); never raises."""
        try:
            with self._transaction(write=False) as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 -- a health check reports, it does not fail
            log.warning("database ping failed (%s)", _describe(exc))
            return False
        return True

    def close(self) -> None:
        """Try once to flush the spool (the in-memory one dies with us), then release connections."""
        if self._spool_nonempty() and time.monotonic() >= self._down_until:
            self.flush_spool()
        if self._memory_spool:
            log.warning("%d spooled invocation(s) lost at close", len(self._memory_spool))
        self._engine.dispose()

    # ------------------------------------------------------------------- spool

    def _to_entry(self, record: InvocationRecord) -> _SpoolEntry:
        received_at = record.received_at or datetime.now(UTC)
        return {
            "service_id": record.service_id,
            "hook": record.hook,
            "hook_instance": record.hook_instance,
            "patient_hash": None if record.patient_id is None else self.hash_patient_id(record.patient_id),
            "rules_fired": list(record.rules_fired),
            "cards": [(uuid, rule, ref) for uuid, rule, ref in record.cards],
            "duration_ms": float(record.duration_ms),
            "outcome": record.outcome,
            "http_status": int(record.http_status),
            "ruleset_version": record.ruleset_version,
            "received_at": received_at.astimezone(UTC).isoformat(),
        }

    @staticmethod
    def _insert(conn: Connection, entry: _SpoolEntry) -> None:
        received_at = datetime.fromisoformat(entry["received_at"])
        result = conn.execute(
            invocations.insert().values(
                received_at=received_at,
                service_id=entry["service_id"],
                hook=entry["hook"],
                hook_instance=entry["hook_instance"],
                patient_hash=entry["patient_hash"],
                rules_fired=entry["rules_fired"],
                card_uuids=[card[0] for card in entry["cards"]],
                duration_ms=entry["duration_ms"],
                outcome=entry["outcome"],
                http_status=entry["http_status"],
                ruleset_version=entry["ruleset_version"],
            )
        )
        if entry["cards"]:
            primary_key = result.inserted_primary_key
            if primary_key is None:  # pragma: no cover -- every supported driver reports it
                raise RuntimeError("database did not report the invocation id")
            invocation_id = primary_key[0]
            conn.execute(
                cards_issued.insert(),
                [
                    {
                        "card_uuid": uuid,
                        "invocation_id": invocation_id,
                        "rule_id": rule,
                        "service_id": entry["service_id"],
                        "hook_instance": entry["hook_instance"],
                        "draft_order_ref": ref,
                        "issued_at": received_at,
                    }
                    for uuid, rule, ref in entry["cards"]
                ],
            )

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + self._retry_interval

    def _spool_nonempty(self) -> bool:
        if self._memory_spool or self._spool_path is None:
            return bool(self._memory_spool)
        try:
            return self._spool_path.stat().st_size > 0
        except FileNotFoundError:
            return False

    @contextlib.contextmanager
    def _spool_guard(self) -> Iterator[None]:
        """Exclusive access to the spool across threads and (for the file) processes."""
        with self._spool_lock:
            if self._spool_path is None:
                yield
                return
            with open(self._spool_lock_path, "a", encoding="utf-8") as lock_file:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _spool(self, entry: _SpoolEntry) -> None:
        """Append to the spool; falls back to memory if the spool file cannot be written."""
        with self._spool_guard():
            if self._spool_path is not None:
                try:
                    with open(self._spool_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
                        fh.flush()
                        os.fsync(fh.fileno())
                    return
                except OSError as exc:
                    log.error("cannot write the spool file (%s); spooling in memory", type(exc).__name__)
            if len(self._memory_spool) == MEMORY_SPOOL_MAX:
                log.warning("in-memory spool full (%d); dropping the oldest invocation", MEMORY_SPOOL_MAX)
            self._memory_spool.append(entry)

    def _read_spool(self) -> list[_SpoolEntry]:
        """All spooled entries (file first, then memory); caller holds the spool guard."""
        entries: list[_SpoolEntry] = []
        if self._spool_path is not None:
            try:
                lines = self._spool_path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                lines = []
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    log.error("spool line %d is not valid JSON; dropped", number)
        entries.extend(self._memory_spool)
        return entries

    def _rewrite_spool(self, remaining: list[_SpoolEntry]) -> None:
        """Replace the spool by `remaining`; caller holds the spool guard."""
        self._memory_spool.clear()
        if self._spool_path is None:
            self._memory_spool.extend(remaining)
            return
        tmp = self._spool_path.with_name(self._spool_path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                for entry in remaining:
                    fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._spool_path)
        except OSError as exc:
            log.error("cannot rewrite the spool file (%s); keeping the rest in memory", type(exc).__name__)
            self._memory_spool.extend(remaining)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL for concurrent readers; SQLAlchemy (not sqlite3) emits BEGIN; FKs enforced.

    synchronous=NORMAL is SQLite's recommended setting with WAL: a commit survives a crash
    of the service, only a power loss can undo the last commits, and it saves an fsync per
    request (about a millisecond on the hot path).
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    """BEGIN IMMEDIATE for writes avoids SQLITE_BUSY on lock upgrade; plain BEGIN for reads."""
    if conn.get_execution_options().get("pcds_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
