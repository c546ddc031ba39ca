"""How to subscribe to the hub with common Python SSE client libraries."""
