"""The HTTP API described as OpenAPI 3.0, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub import __version__
from hub.channels import EVENT_RE, NAME_RE

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }


def _ids() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string", "pattern": r"^\d+-\d+$"}}


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "hub",
        "version": __version__,
        "description": "Publish over HTTP; receive over Server-Sent Events with exact resume.",
    },
    "paths": {
        "/events": {
            "get": {
                "summary": "Subscribe: a text/event-stream of the user's channel and topics",
                "security": [{"bearer": []}, {"cookie": []}, {"query": []}],
                "parameters": [
                    {
                        "name": "topic",
                        "in": "query",
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "style": "form",
                        "explode": True,
                    },
                    {"name": "lastEventId", "in": "query", "schema": {"type": "string"}},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "The stream: `retry:`, then one frame per event",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _problem("A bad parameter"),
                    "401": _problem("No or bad token"),
                    "403": _problem("A topic the token does not allow"),
                    "429": _problem("Too many open streams for this user"),
                    "503": _problem("The hub is shutting down"),
                },
            }
        },
        "/publish": {
            "post": {
                "summary": "Publish one message or a batch to users and topics",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Message"},
                                    {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 500,
                                        "items": {"$ref": "#/components/schemas/Message"},
                                    },
                                ]
                            }
                        },
                        "application/x-ndjson": {
                            "schema": {
                                "type": "string",
                                "description": "One Message object per line, each published "
                                "as soon as its line arrives",
                            }
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "Published: in every target's history",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {
                                            "type": "object",
                                            "required": ["ids"],
                                            "properties": {"ids": _ids()},
                                        },
                                        {
                                            "type": "object",
                                            "required": ["results"],
                                            "properties": {
                                                "results": {
                                                    "type": "array",
                                                    "items": {
                                                        "type": "object",
                                                        "properties": {"ids": _ids()},
                                                    },
                                                }
                                            },
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "400": _problem("Malformed JSON or fields"),
                    "401": _problem("No or bad publisher token"),
                    "403": _problem("A target the token does not allow"),
                    "413": _problem("Too large"),
                    "415": _problem("Another content type"),
                    "422": _problem("Idempotency-Key reused for another request"),
                    "503": _problem("The broker is unreachable; see Retry-After"),
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Up"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: the broker and its live connection answer",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "hub_token"},
            "query": {"type": "apiKey", "in": "query", "name": "token"},
        },
        "schemas": {
            "Message": {
                "type": "object",
                "additionalProperties": False,
                "required": ["data"],
                "description": "At least one of users and topics is non-empty.",
                "anyOf": [
                    {"required": ["users"], "properties": {"users": {"minItems": 1}}},
                    {"required": ["topics"], "properties": {"topics": {"minItems": 1}}},
                ],
                "properties": {
                    "users": {
                        "type": "array",
                        "items": {"type": "string", "pattern": f"^{NAME_RE.pattern}$"},
                    },
                    "topics": {
                        "type": "array",
                        "items": {"type": "string", "pattern": f"^{NAME_RE.pattern}$"},
                    },
                    # `hub.*` types are the hub's own (hub.reset).
                    "event": {"type": "string", "pattern": f"^(?!hub\\.){EVENT_RE.pattern}$"},
                    "data": {"description": "Any JSON value; a string is sent as is"},
                },
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}

# POST /events: the same stream for fetch clients, its parameters in the query or a body.
SPEC["paths"]["/events"]["post"] = {
    **SPEC["paths"]["/events"]["get"],
    "summary": "Subscribe with fetch: the stream of GET /events, parameters maybe in a body",
    "security": [{"bearer": []}, {"cookie": []}, {"query": []}],
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "topics": {"type": "array", "items": {"type": "string"}},
                        "lastEventId": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {
        **SPEC["paths"]["/events"]["get"]["responses"],
        "400": _problem("A bad parameter, in the query or the body"),
        "408": _problem("The body did not arrive in time"),
        "413": _problem("The body is too large"),
        "415": _problem("A body that is not application/json"),
    },
}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
