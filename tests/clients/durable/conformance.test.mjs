// The Durable Streams conformance suite (npm @durable-streams/server-conformance-tests),
// through its programmatic entry, against the hub at DS_BASE_URL. Every request carries
// the token in DS_TOKEN (setup.mjs), as a client of a hub that asks for one sends it.
import { describe } from "vitest"
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

describe("hub", () => {
  runConformanceTests({
    baseUrl: process.env.DS_BASE_URL,
    longPollTimeoutMs: Number(process.env.DS_LONG_POLL_MS || 20000),
  })
})
