"""Typed errors, one base with families; each family maps to one HTTP status.

Raised anywhere in the request flow and answered once by the handlers that
`create_app` registers (see `service/app.py`). Messages are shown to clients,
so they never contain patient data, tokens or genotypes.
"""

from __future__ import annotations


class CdsError(Exception):
    """Base of every error this service raises on purpose."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(CdsError):
    """The client's request is malformed; `field` names the offending field."""

    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class Unauthorized(CdsError):
    """Authentication failed; the response carries no detail (CDS Hooks best practice)."""

    status = 401


class ServiceNotFound(CdsError):
    status = 404


class PayloadTooLarge(CdsError):
    status = 413


class PatientDataUnavailable(CdsError):
    """Data the rules need could not be obtained from prefetch or the FHIR server (412)."""

    status = 412

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"prefetch '{key}' could not be obtained: {reason}")
        self.key = key
        self.reason = reason


class StorageUnavailable(CdsError):
    """The database cannot store something that must not be lost (feedback): 503, retry."""

    status = 503


class PackError(Exception):
    """A rule pack or knowledge file is invalid. Carries file, line, column and reason."""

    def __init__(self, problems: list["Problem"]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.format() for p in problems))


class Problem:
    """One lint finding, printed as `file:line:column: reason`."""

    __slots__ = ("file", "line", "column", "reason", "severity", "check")

    def __init__(
        self,
        file: str,
        line: int,
        column: int,
        reason: str,
        severity: str = "error",
        check: str = "schema",
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
        self.severity = severity
        self.check = check

    def format(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.reason} [{self.check}]"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "check": self.check,
            "reason": self.reason,
        }

    def __repr__(self) -> str:
        return f"Problem({self.format()!r})"
