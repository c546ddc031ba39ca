// Every fetch the suite (and its client library) makes carries the hub token, unless the
// request sets its own Authorization.
const token = process.env.DS_TOKEN
if (token) {
  const plain = globalThis.fetch
  globalThis.fetch = (input, init = {}) => {
    const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined))
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${token}`)
    return plain(input, { ...init, headers })
  }
}
