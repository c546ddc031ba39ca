"""hub: a real-time notification hub (HTTP publish, Server-Sent Events delivery)."""

__version__ = "0.1.0"
