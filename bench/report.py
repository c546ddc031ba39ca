"""Results as the Markdown table of docs/performance.md (README shows its headline rows)."""

from __future__ import annotations

from typing import Any

ROWS = [
    ("memory per idle SSE stream (hub RSS)", "idle", "kib_per_idle_stream", "{} KiB"),
    ("CPU to accept the idle streams", "idle", "cpu_s_to_accept", "{} s"),
    ("fan-out: events delivered per hub CPU-second", "fanout", "deliveries_per_hub_cpu_s", "{:,}"),
    ("fan-out at 10 publishes/s: publish→receive p99", "fanout", "p99_ms_at_10_per_s", "{} ms"),
    (
        "unicast: publishes per (hub + Redis) CPU-second",
        "unicast",
        "publishes_per_server_cpu_s",
        "{:,}",
    ),
    (
        "unicast, batches of 100: messages per CPU-second",
        "unicast",
        "batch_messages_per_server_cpu_s",
        "{:,}",
    ),
    (
        "unicast, NDJSON: messages per CPU-second",
        "unicast",
        "ndjson_messages_per_server_cpu_s",
        "{:,}",
    ),
    ("unicast at 500/s: publish→receive p99", "unicast", "p99_ms_at_500_per_s", "{} ms"),
    (
        "publish, nobody listening: publishes per (hub + Redis) CPU-second",
        "publish",
        "publishes_per_server_cpu_s",
        "{:,}",
    ),
    (
        "publish, nobody listening, batches of 100: messages per CPU-second",
        "publish",
        "batch_messages_per_server_cpu_s",
        "{:,}",
    ),
    ("resume, 100 missed events (median)", "resume", "median_ms", "exact, {} ms"),
    (
        "Durable Streams: 64-byte appends per (hub + Redis) CPU-second",
        "durable",
        "appends_per_server_cpu_s",
        "{:,}",
    ),
    ("Durable Streams: Redis bytes per appended chunk", "durable", "redis_bytes_per_chunk", "{}"),
    ("Durable Streams: live long-poll read p50", "durable", "live_p50_ms", "{} ms"),
    ("Durable Streams: live long-poll read p99", "durable", "live_p99_ms", "{} ms"),
]


def markdown(record: dict[str, Any]) -> str:
    results = record["results"]
    lines = [
        f"Broker: {record['broker']}; pinned: {record['pinned']}; {record['machine']}; "
        f"{record['when']}.",
        "",
        "| measure | hub |",
        "|---|---|",
    ]
    for label, scenario, key, form in ROWS:
        if scenario in results and key in results[scenario]:
            lines.append(f"| {label} | {form.format(results[scenario][key])} |")
    return "\n".join(lines) + "\n"
