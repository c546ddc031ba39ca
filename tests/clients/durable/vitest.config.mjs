export default {
  test: {
    root: new URL(".", import.meta.url).pathname,
    include: ["conformance.test.mjs"],
    setupFiles: ["./setup.mjs"],
    // Every test makes its own streams: they run side by side (24 s one by one, 5 s so).
    sequence: { concurrent: true },
    maxConcurrency: 20,
    testTimeout: 60000,
    hookTimeout: 60000,
  },
}
