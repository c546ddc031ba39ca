// Subscribe with @microsoft/fetch-event-source (2.x): a POST with headers and a JSON body;
// prints every event as one JSON line. npm install @microsoft/fetch-event-source, then
//   HUB_URL=http://127.0.0.1:8080 HUB_SUBSCRIBER_TOKEN=... HUB_TOPICS=news node fetch-event-source.mjs
import {fetchEventSource} from '@microsoft/fetch-event-source'

// Outside a browser the library still calls window.setTimeout and document.removeEventListener.
globalThis.window ??= globalThis
globalThis.document ??= {addEventListener() {}, removeEventListener() {}}

class Refused extends Error {}

await fetchEventSource(new URL('/events', process.env.HUB_URL ?? 'http://127.0.0.1:8080'), {
  method: 'POST',
  headers: {
    Authorization: `Bearer ${process.env.HUB_SUBSCRIBER_TOKEN}`,
    'Content-Type': 'application/json',
  },
  // Resuming a previous run: `lastEventId` in the body. On every reconnect the library sends
  // the Last-Event-ID header itself, and the header wins.
  body: JSON.stringify({
    topics: (process.env.HUB_TOPICS ?? '').split(',').filter(Boolean),
    lastEventId: process.env.HUB_LAST_EVENT_ID || undefined,
  }),
  openWhenHidden: true, // no visibilitychange to follow: stay connected
  async onopen(response) {
    if (response.ok) return
    const problem = `${response.status} ${await response.text()}` // application/problem+json
    // 400, 401, 403: retrying cannot help. 429, 503 (Redis unreachable): retry later.
    throw response.status === 429 || response.status >= 500 ? new Error(problem) : new Refused(problem)
  },
  onmessage(msg) {
    if (msg.event === 'hub.open') return // the stream's first event: the hub's, not the app's
    // `data` is the published text: a string as sent, any other value as its JSON (JSON.parse
    // it). `hub.reset` means history no longer reaches back to the last id: refetch your state.
    console.log(JSON.stringify({id: msg.id, event: msg.event || 'message', data: msg.data}))
  },
  // The hub ended the stream (a restart, a drain): throw to reconnect, or the library stops.
  onclose() {
    throw new Error('stream ended')
  },
  // Throw to stop; return nothing to retry after the hub's `retry:` delay.
  onerror(err) {
    if (err instanceof Refused) throw err
  },
})
