"""/openapi.json describes the HTTP API, and the running hub keeps to it (schemathesis)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from hub.auth.verify import mint
from tests.support.hubs import PUBLISHER_KEY, SUBSCRIBER_KEY, StartHub

# GET /events answers with an endless stream: it is proven by its own tests, not fuzzed here.
OPERATIONS = [("/publish", "POST"), ("/healthz", "GET"), ("/readyz", "GET"), ("/metrics", "GET")]


def test_the_running_hub_keeps_to_its_openapi_document(start_hub: StartHub) -> None:
    hub = start_hub(
        {"HUB_SUBSCRIBER_JWT_KEY": SUBSCRIBER_KEY, "HUB_PUBLISHER_JWT_KEY": PUBLISHER_KEY}
    )
    with urllib.request.urlopen(f"{hub.url}/openapi.json", timeout=10) as response:
        document = json.load(response)
    assert document["openapi"].startswith("3.")
    assert {"/events", "/publish", "/healthz", "/readyz", "/metrics"} <= set(document["paths"])
    schema = schemathesis.openapi.from_dict(document)
    token = mint(PUBLISHER_KEY, "HS256", sub="schemathesis", publish=["*"])
    for path, method in OPERATIONS:
        operation = schema[path][method]

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case[Any]) -> None:
            if case.media_type == "application/x-ndjson":
                return  # any text fits "a string": its lines are proven by the publish tests
            if case.headers and "Idempotency-Key" in case.headers:
                # A key reused for another body is a documented 422 that depends on earlier
                # requests, which a generator cannot know: every case gets a fresh key.
                case.headers["Idempotency-Key"] = uuid.uuid4().hex
            response = case.call(base_url=hub.url, headers={"Authorization": f"Bearer {token}"})
            # No 5xx, only documented statuses and content types, bodies matching their schemas.
            case.validate_response(response)

        conforms()
