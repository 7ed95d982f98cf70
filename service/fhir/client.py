"""A deliberately small FHIR REST reader used to fill prefetch gaps.

It only does `GET` and turns every way a call can go wrong into one typed
exception, so callers decide on 412 versus "use what we have" without caring
about `requests` internals. Error reasons are short, fixed phrases: they end
up in client-visible 412 messages and logs, so they never echo URLs (which
carry patient ids), bodies or the access token.

Exception hierarchy::

    FhirFetchError               any failure; `.reason` is a short phrase
    ├── FhirTimeout              connect/read timeout, or the caller's deadline passed
    ├── FhirConnectionError      refused, reset, dropped without an answer, TLS failure
    ├── FhirStatusError          non-2xx answer; `.status` holds the code
    ├── FhirInvalidJson          body is not JSON
    ├── FhirNotAResource         JSON without a string `resourceType`
    ├── FhirOperationOutcome     2xx answer whose body is an OperationOutcome
    ├── FhirResponseTooLarge     body exceeds `max_bytes` (memory guard)
    └── FhirForeignUrl           URL is not under the FHIR base (token stays home)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from urllib.parse import urlsplit

import requests
import requests.auth
import urllib3.exceptions

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
DEFAULT_MAX_BYTES = 20_000_000


class FhirFetchError(Exception):
    """A FHIR read failed; `reason` is safe to show to clients and to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FhirTimeout(FhirFetchError):
    """The server was too slow for the per-call timeout or the overall deadline."""

    def __init__(self, reason: str = "timed out") -> None:
        super().__init__(reason)


class FhirConnectionError(FhirFetchError):
    """No usable HTTP answer: refused, reset, closed early, TLS error."""

    def __init__(self, reason: str = "connection to FHIR server failed") -> None:
        super().__init__(reason)


class FhirStatusError(FhirFetchError):
    """The server answered with a non-2xx status (redirects are not followed)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"FHIR server answered {status}")
        self.status = status


class FhirInvalidJson(FhirFetchError):
    def __init__(self, reason: str = "invalid JSON") -> None:
        super().__init__(reason)


class FhirNotAResource(FhirFetchError):
    def __init__(self, reason: str = "response is not a FHIR resource") -> None:
        super().__init__(reason)


class FhirOperationOutcome(FhirFetchError):
    """A 2xx OperationOutcome means the server could not produce the data."""

    def __init__(self, reason: str = "FHIR server answered with an OperationOutcome") -> None:
        super().__init__(reason)


class FhirResponseTooLarge(FhirFetchError):
    def __init__(self, reason: str = "response too large") -> None:
        super().__init__(reason)


class FhirForeignUrl(FhirFetchError):
    """Refused before sending: the bearer token must only go to `fhirServer`."""

    def __init__(self, reason: str = "link outside fhirServer refused") -> None:
        super().__init__(reason)


_shared_session: requests.Session | None = None
_shared_lock = threading.Lock()


def shared_session() -> requests.Session:
    """One pooled Session per process, created on first use (keep-alive across requests)."""
    global _shared_session
    with _shared_lock:
        if _shared_session is None:
            _shared_session = requests.Session()
        return _shared_session


class _BearerAuth(requests.auth.AuthBase):
    """Sets the header via `auth=` so a ~/.netrc entry can never replace the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_BearerAuth(<redacted>)"


def _is_timeout(exc: BaseException) -> bool:
    """`iter_content` wraps read timeouts in ConnectionError; unwrap to classify."""
    if isinstance(exc, requests.Timeout):
        return True
    return any(isinstance(a, urllib3.exceptions.TimeoutError) for a in exc.args)


class FhirClient:
    """GET-only FHIR client bound to one base URL, one token and an optional deadline.

    `deadline` is a `time.monotonic()` instant; every call clamps its
    (connect, read) timeouts to the time left so a caller's budget holds.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (2.0, 3.0),
        *,
        deadline: float | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = _BearerAuth(token) if token else None
        self._session = session if session is not None else shared_session()
        self._timeout = timeout
        self._deadline = deadline
        self._max_bytes = max_bytes
        base = urlsplit(self.base_url)
        self._origin = (base.scheme.lower(), base.netloc.lower())
        self._base_path = base.path.rstrip("/")

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    def resolve(self, url_or_path: str) -> str:
        """Absolute URL for a relative path or a link; refuse anything outside the base."""
        parts = urlsplit(url_or_path)
        if parts.scheme or parts.netloc:
            same_origin = (parts.scheme.lower(), parts.netloc.lower()) == self._origin
            path = parts.path.rstrip("/")
            under_base = path == self._base_path or path.startswith(self._base_path + "/")
            if not (same_origin and under_base):
                raise FhirForeignUrl()
            url = url_or_path
        else:
            url = f"{self.base_url}/{url_or_path.lstrip('/')}"
            parts = urlsplit(url)
        if ".." in parts.path.split("/"):
            raise FhirForeignUrl("path escapes fhirServer base")
        return url

    def _timeouts(self) -> tuple[float, float]:
        connect, read = self._timeout
        if self._deadline is None:
            return connect, read
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise FhirTimeout()
        return min(connect, left), min(read, left)

    def get(self, url_or_path: str) -> dict:
        """Read one resource (often a Bundle); raise a FhirFetchError subclass on any failure."""
        url = self.resolve(url_or_path)
        timeout = self._timeouts()
        started = time.monotonic()
        try:
            with self._session.get(
                url,
                headers={"Accept": FHIR_JSON},
                auth=self._auth,
                timeout=timeout,
                stream=True,
                allow_redirects=False,
            ) as resp:
                log.debug("FHIR GET answered %s after %.0f ms", resp.status_code,
                          (time.monotonic() - started) * 1000)
                if not 200 <= resp.status_code < 300:
                    raise FhirStatusError(resp.status_code)
                body = self._read_body(resp)
        except FhirFetchError:
            raise
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # str(exc) would include the URL, i.e. the patient id: keep it out.
            if _is_timeout(exc):
                raise FhirTimeout() from None
            raise FhirConnectionError() from None
        return _parse_resource(body)

    def _read_body(self, resp: requests.Response) -> bytes:
        """Read in chunks so an oversized or endlessly dripping body is cut off."""
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self._max_bytes:
            raise FhirResponseTooLarge()
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > self._max_bytes:
                raise FhirResponseTooLarge()
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise FhirTimeout()
            chunks.append(chunk)
        return b"".join(chunks)


def _parse_resource(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise FhirInvalidJson() from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str) \
            or not data["resourceType"]:
        raise FhirNotAResource()
    if data["resourceType"] == "OperationOutcome":
        raise FhirOperationOutcome()
    return data
