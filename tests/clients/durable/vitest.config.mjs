export default {
  test: {
    root: new URL(".", import.meta.url).pathname,
    include: ["conformance.test.mjs"],
    setupFiles: ["./setup.mjs"],
    testTimeout: 60000,
    hookTimeout: 60000,
  },
}
