"""The HTTP edge: the lean front for streams and publishes, aiohttp's app for the rest,
and what both share (admission answers, problems, CORS, access logs, health, OpenAPI)."""
