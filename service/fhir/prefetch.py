"""Gather the patient data a hook invocation needs: prefetch first, FHIR server second.

CDS Hooks 2.0 lets a client send, per prefetch key, nothing, `null`, an
OperationOutcome, a resource or a (possibly paged) Bundle. Whatever is
missing is fetched from `fhirServer` with the bearer token; if data the
rules *require* cannot be obtained the spec says reply 412, which is what
`PatientDataUnavailable` maps to. Everything is bounded (time, pages,
entries, bytes) because the EHR waits on us while a clinician signs.

Nothing here logs URLs, tokens or resources: only key names, outcomes,
status codes (in client.py) and timings.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from service.errors import BadRequest, PatientDataUnavailable
from service.fhir.client import FhirClient, FhirFetchError, FhirNotAResource

log = logging.getLogger(__name__)

USER_TOKENS = {
    "Practitioner": "userPractitionerId",
    "PractitionerRole": "userPractitionerRoleId",
    "Patient": "userPatientId",
    "RelatedPerson": "userRelatedPersonId",
}
_TOKEN = re.compile(r"\{\{(.*?)\}\}")


@dataclass
class FetchSettings:
    """Limits for one hook request's data gathering (all fetching shares `total_budget`)."""

    timeout_connect: float = 2.0
    timeout_read: float = 3.0
    total_budget: float = 4.0
    max_pages: int = 5
    max_workers: int = 4
    max_entries: int = 50_000
    max_response_bytes: int = 20_000_000


@dataclass
class GatheredData:
    """What the rules get to see, plus why some keys are missing or incomplete.

    sources[key]: "prefetch" (from the request), "fetched" (from fhirServer),
    "empty" (obtained fine, zero resources), "unavailable" (could not be
    obtained or only partly: resources may then hold the pages that did arrive).
    problems[key]: short reason; never tokens or patient data.
    """

    resources: dict[str, list[dict]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    incomplete: set[str] = field(default_factory=set)  # keys cut short by max_pages / max_entries

    def all_resources(self) -> list[dict]:
        """Every resource once: several keys (e.g. _include) may return the same one."""
        seen: set[tuple[str, str]] = set()
        out: list[dict] = []
        for items in self.resources.values():
            for res in items:
                rid = res.get("id")
                if isinstance(rid, str) and rid:
                    ident = (str(res.get("resourceType")), rid)
                    if ident in seen:
                        continue
                    seen.add(ident)
                out.append(res)
        return out


def user_ids_from_context(context: dict) -> dict[str, str]:
    """Map `context.userId` ("Practitioner/123", or a full URL) to its user token."""
    user_id = context.get("userId")
    if not isinstance(user_id, str):
        return {}
    parts = [p for p in user_id.split("?")[0].split("/") if p]
    if len(parts) < 2 or parts[-2] not in USER_TOKENS:
        return {}
    return {USER_TOKENS[parts[-2]]: parts[-1]}


class _Unfillable(Exception):
    pass


def _primitive(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)) and value != "":
        return str(value)
    return None


def render_template(template: str, context: dict, user_ids: dict | None = None) -> str | None:
    """Fill CDS Hooks 2.0 prefetch tokens; None when any token cannot be filled.

    Only `{{context.X}}` with X a root-level primitive and the four user tokens
    are allowed; nested paths, FHIRPath (3.0) or leftover braces make the key
    unfetchable rather than producing a wrong query.
    """
    if not isinstance(template, str):
        return None
    ids = user_ids if user_ids is not None else user_ids_from_context(context)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        value: str | None = None
        if name.startswith("context."):
            key = name[len("context."):]
            if key and "." not in key and isinstance(context, dict):
                value = _primitive(context.get(key))
        elif name in USER_TOKENS.values():
            value = _primitive(ids.get(name))
        if value is None:
            raise _Unfillable(name)
        return quote(value, safe="")

    try:
        rendered = _TOKEN.sub(fill, template)
    except _Unfillable:
        return None
    if "{{" in rendered or "}}" in rendered:
        return None
    return rendered


def _bearer_token(authorization: dict | None) -> str | None:
    """The access token, if any; a non-Bearer or token-less authorization is a client error."""
    if authorization is None:
        return None
    if not isinstance(authorization, dict):
        raise BadRequest("fhirAuthorization", "must be an object")
    if str(authorization.get("token_type", "")).lower() != "bearer":
        raise BadRequest("fhirAuthorization.token_type", "must be Bearer")
    token = authorization.get("access_token")
    if not isinstance(token, str) or not token:
        raise BadRequest("fhirAuthorization.access_token", "must be a non-empty string")
    return token


def _is_outcome_entry(entry: dict) -> bool:
    search = entry.get("search")
    return isinstance(search, dict) and search.get("mode") == "outcome"


def _flatten(bundle: dict) -> list[dict]:
    """Bundle entries' resources, minus search.mode=outcome and OperationOutcome entries."""
    out: list[dict] = []
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return out
    for entry in entries:
        if not isinstance(entry, dict) or _is_outcome_entry(entry):
            continue
        res = entry.get("resource")
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str) \
                and res["resourceType"] != "OperationOutcome":
            out.append(res)
    return out


def _next_link(bundle: dict) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next" \
                and isinstance(link.get("url"), str) and link["url"]:
            return link["url"]
    return None


@dataclass
class _Outcome:
    """Result of one key: resources so far; `failure` set when data is missing or partial."""

    resources: list[dict]
    source: str
    failure: str | None = None
    note: str | None = None
    incomplete: bool = False  # capped by max_pages / max_entries: some data was not read


def _is_bundle(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "Bundle"


def _collect(first: dict, source: str, client: FhirClient | None, settings: FetchSettings) -> _Outcome:
    """Flatten a (first) result and follow Bundle `next` links within the page and entry caps."""
    if not _is_bundle(first):
        return _Outcome([first], source)
    resources = _flatten(first)
    page, pages = first, 1
    while True:
        if len(resources) >= settings.max_entries:
            return _Outcome(resources[: settings.max_entries], source,
                            note=f"truncated at {settings.max_entries} entries", incomplete=True)
        url = _next_link(page)
        if url is None:
            return _Outcome(resources, source)
        if pages >= settings.max_pages:
            return _Outcome(resources, source, note=f"stopped after {settings.max_pages} pages", incomplete=True)
        if client is None:
            return _Outcome(resources, "unavailable", failure="next page needs fhirServer")
        try:
            page = client.get(url)
            if not _is_bundle(page):
                raise FhirNotAResource("next page is not a Bundle")
        except FhirFetchError as exc:
            return _Outcome(resources, "unavailable", failure=f"page {pages + 1}: {exc.reason}")
        resources.extend(_flatten(page))
        pages += 1


def _fetch(path: str, client: FhirClient, settings: FetchSettings) -> _Outcome:
    try:
        first = client.get(path)
    except FhirFetchError as exc:
        return _Outcome([], "unavailable", failure=exc.reason)
    return _collect(first, "fetched", client, settings)


def gather(
    templates: dict[str, str],
    prefetch: dict | None,
    context: dict,
    fhir_server: str | None,
    authorization: dict | None,
    settings: FetchSettings,
    required: set[str],
    session: requests.Session | None = None,
) -> GatheredData:
    """Resolve every template key from prefetch or fhirServer within `settings.total_budget`.

    Raises PatientDataUnavailable (412) for the first key of `required` (in
    template order) that could not be obtained completely, and BadRequest (400)
    when fhirAuthorization is not a Bearer token. Other keys degrade to
    "unavailable" with a reason in `problems`.
    """
    started = time.monotonic()
    deadline = started + settings.total_budget
    token = _bearer_token(authorization)
    supplied = prefetch if isinstance(prefetch, dict) else {}
    client = None
    if fhir_server:
        client = FhirClient(
            fhir_server, token, session,
            (settings.timeout_connect, settings.timeout_read),
            deadline=deadline, max_bytes=settings.max_response_bytes,
        )

    outcomes: dict[str, _Outcome] = {}
    jobs: dict[str, tuple[Any, ...]] = {}
    for key, template in templates.items():
        value = supplied.get(key)
        supplied_ok = isinstance(value, dict) and isinstance(value.get("resourceType"), str) \
            and value["resourceType"] != "OperationOutcome"
        if supplied_ok:
            if _is_bundle(value) and _next_link(value) is not None:
                jobs[key] = (_collect, value, "prefetch", client, settings)
            else:
                outcomes[key] = _collect(value, "prefetch", None, settings)
            continue
        # null, absent, OperationOutcome or junk: the client did not deliver, so fetch.
        why = "prefetch was an OperationOutcome; " if isinstance(value, dict) \
            and value.get("resourceType") == "OperationOutcome" else ""
        path = render_template(template, context)
        if path is None:
            outcomes[key] = _Outcome([], "unavailable", failure=why + "template token cannot be filled")
        elif client is None:
            outcomes[key] = _Outcome([], "unavailable", failure=why + "not in prefetch and no fhirServer")
        else:
            jobs[key] = (_fetch, path, client, settings)

    if jobs:
        pool = ThreadPoolExecutor(max_workers=max(1, min(settings.max_workers, len(jobs))),
                                  thread_name_prefix="fhir-fetch")
        try:
            futures: dict[str, Future[_Outcome]] = {
                key: pool.submit(fn, *args) for key, (fn, *args) in jobs.items()
            }
            wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
            for key, fut in futures.items():
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    outcomes[key] = fut.result()
                elif fut.done() and not fut.cancelled():
                    log.debug("prefetch %s: unexpected %s", key, type(fut.exception()).__name__)
                    outcomes[key] = _Outcome([], "unavailable", failure="fetch failed")
                else:
                    outcomes[key] = _Outcome([], "unavailable", failure="timed out")
        finally:
            # Do not wait for stragglers: their own timeouts are clamped to the deadline.
            pool.shutdown(wait=False, cancel_futures=True)

    data = GatheredData()
    budget = settings.max_entries
    for key in templates:
        out = outcomes[key]
        resources = out.resources
        notes = [n for n in (out.failure, out.note) if n]
        incomplete = out.incomplete
        if len(resources) > budget:
            resources = resources[:budget]
            notes.append(f"truncated: over {settings.max_entries} entries in total")
            incomplete = True
        if incomplete:
            data.incomplete.add(key)
        budget -= len(resources)
        source = out.source if out.failure is None else "unavailable"
        if source != "unavailable" and not resources:
            source = "empty"
        data.resources[key] = resources
        data.sources[key] = source
        if notes:
            data.problems[key] = "; ".join(dict.fromkeys(notes))
        log.debug("prefetch %s: %s, %d resources", key, source, len(resources))
    log.debug("prefetch gathered %d keys in %.0f ms", len(templates),
              (time.monotonic() - started) * 1000)

    for key in templates:
        # Advice on part of the data could be wrong (a genotype on the page not read), so a
        # required key that is unavailable or was cut short is a 412.
        if key in required and (data.sources[key] == "unavailable" or key in data.incomplete):
            raise PatientDataUnavailable(key, data.problems.get(key, "unavailable"))
    return data
