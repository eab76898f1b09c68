"""A tiny FHIR search responder for ``responses`` (FHIR-fallback tests): it answers
an Observation search with the given resources when the query asks for one of
their codes, so a result is found only if the service's query names its code."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import responses

from tests.builders import bundle, patient


def _codes(resource: dict) -> set[str]:
    return {str(c.get("code")) for c in (resource.get("code") or {}).get("coding", []) if isinstance(c, dict)}


def serve(rsps: responses.RequestsMock, base: str, observations: list[dict], **others: list[dict]) -> None:
    """``others``: resources by type for the other searches, e.g. Condition=[...], AllergyIntolerance=[...]."""
    def handler(request):
        url = urlsplit(request.url)
        asked = {c.rsplit("|", 1)[-1] for c in parse_qs(url.query).get("code", [""])[0].split(",")}
        if url.path.endswith("/Patient/pt-1"):
            body = patient()
        elif url.path.endswith("/Observation"):
            body = bundle(*[o for o in observations if _codes(o) & asked])
        else:
            body = bundle(*others.get(url.path.rsplit("/", 1)[-1], []))
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    rsps.add_callback(responses.GET, re.compile(re.escape(base) + r"/.*"), callback=handler)
