"""FHIR date, dateTime and instant values, read defensively (one parser for every fact reader)."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any


def parse_fhir_datetime(value: Any) -> datetime | None:
    """FHIR date/dateTime/instant -> aware datetime (UTC when no zone); None if unreadable."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}", text):
            return datetime(int(text), 1, 1, tzinfo=timezone.utc)
        if re.fullmatch(r"\d{4}-\d{2}", text):
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def parse_fhir_date(value: Any) -> date | None:
    """The calendar date written in a FHIR date or dateTime (its own zone, not converted)."""
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    parsed = parse_fhir_datetime(value)
    return parsed.date() if parsed else None
