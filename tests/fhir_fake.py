"""A local fake FHIR server for tests: real sockets, ephemeral port, one thread.

Routes map a path relative to the base (e.g. "/Patient/p1") to a `Route`
(or a plain dict, shorthand for `Route(body=...)`). A key including the query
("/Observation?patient=p1") wins over a path-only key. Every request is
recorded (path, query, Authorization header) so tests can check what was sent.

Usage::

    with fake_fhir_server({"/Patient/p1": {"resourceType": "Patient", "id": "p1"}}) as fhir:
        fhir.base_url          # "http://127.0.0.1:<port>/fhir"
        fhir.requests          # [RecordedRequest(path, query, authorization), ...]

Shutdown wakes delayed handlers, stops the loop and joins handler threads, so
nothing leaks (pytest runs with filterwarnings=error).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

BASE_PATH = "/fhir"


@dataclass
class Route:
    """How one path answers.

    body: JSON-serialisable answer; status: HTTP status; delay: seconds before
    answering (woken early on shutdown); invalid_json: send a broken body;
    drop: close the socket without any response; pages: resources per page,
    served as searchset Bundles whose `next` link adds `_page=N`.
    """

    body: Any = None
    status: int = 200
    delay: float = 0.0
    invalid_json: bool = False
    drop: bool = False
    pages: list[list[dict]] | None = None


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: dict[str, list[str]]
    authorization: str | None


def bundle(resources: list[dict], next_url: str | None = None, *, kind: str = "searchset") -> dict:
    """A Bundle of `resources`, with a `next` link when `next_url` is given."""
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


@dataclass
class FakeFhirServer:
    routes: dict[str, Route]
    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route_for(self, path: str, query: str) -> Route | None:
        found = self.routes.get(f"{path}?{query}") if query else None
        return found if found is not None else self.routes.get(path)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


def _make_handler(fake: FakeFhirServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so server_close never waits on idle keep-alives.
        protocol_version = "HTTP/1.0"
        timeout = 10

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            rel = path[len(BASE_PATH):] if path.startswith(BASE_PATH) else path
            query = parse_qs(parts.query)
            with fake.lock:
                fake.requests.append(RecordedRequest(rel, query, self.headers.get("Authorization")))
            route = fake.route_for(rel, parts.query)
            if route is None:
                self._send(404, {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "not-found"}]})
                return
            if route.delay and fake.stopping.wait(route.delay):
                self.close_connection = True
                return  # shutting down: drop instead of answering late
            if route.drop:
                self.close_connection = True
                return
            if route.invalid_json:
                self._send_raw(route.status, b'{"resourceType": "Bundle", "entry": [')
                return
            if route.pages is not None:
                self._send(route.status, self._page(rel, query, route.pages))
                return
            self._send(route.status, route.body)

        def _page(self, rel: str, query: dict[str, list[str]], pages: list[list[dict]]) -> dict:
            number = int(query.get("_page", ["1"])[0])
            next_url = None
            if number < len(pages):
                rest = {k: v for k, v in query.items() if k != "_page"}
                rest["_page"] = [str(number + 1)]
                next_url = f"{fake.base_url}{rel}?{urlencode(rest, doseq=True)}"
            return bundle(pages[number - 1], next_url)

        def _send(self, status: int, body: Any) -> None:
            self._send_raw(status, json.dumps(body).encode())

        def _send_raw(self, status: int, payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # client already gave up (timeout tests)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client hang-ups are expected in timeout tests; keep stderr clean


@contextmanager
def fake_fhir_server(routes: dict[str, Route | dict] | None = None) -> Iterator[FakeFhirServer]:
    """Run a FakeFhirServer on 127.0.0.1:<ephemeral> for the duration of the block."""
    fake = FakeFhirServer({k: v if isinstance(v, Route) else Route(body=v)
                           for k, v in (routes or {}).items()})
    server = _Server(("127.0.0.1", 0), _make_handler(fake))
    host, port = server.server_address[:2]
    fake.base_url = f"http://{host}:{port}{BASE_PATH}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="fake-fhir", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
