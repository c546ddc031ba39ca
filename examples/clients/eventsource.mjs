// Subscribe with npm `eventsource` (4.x), the WHATWG EventSource for Node.js:
// prints every event as one JSON line. npm install eventsource@4, then
//   HUB_URL=http://127.0.0.1:8080 HUB_SUBSCRIBER_TOKEN=... HUB_TOPICS=news node eventsource.mjs
import {EventSource} from 'eventsource'

const url = new URL('/events', process.env.HUB_URL ?? 'http://127.0.0.1:8080')
for (const topic of (process.env.HUB_TOPICS ?? '').split(',').filter(Boolean)) {
  url.searchParams.append('topic', topic)
}
// Resuming a previous run: the first connect can only say it in the query. On every
// reconnect EventSource sends the Last-Event-ID header itself, and the header wins.
if (process.env.HUB_LAST_EVENT_ID) url.searchParams.set('lastEventId', process.env.HUB_LAST_EVENT_ID)

const es = new EventSource(url, {
  // Headers go through the `fetch` option (a browser's EventSource sends the cookie instead).
  fetch: (input, init) =>
    fetch(input, {
      ...init,
      headers: {...init.headers, Authorization: `Bearer ${process.env.HUB_SUBSCRIBER_TOKEN}`},
    }),
})

// `data` is the published text: a string as sent, any other value as its JSON (JSON.parse it).
const print = (event) =>
  console.log(JSON.stringify({id: event.lastEventId, event: event.type, data: event.data}))

// Events published without a type arrive as `message`; add a listener per type you publish.
// The hub's own `hub.open` (the stream's first event) is named, so `onmessage` never sees it.
es.onmessage = print
// History no longer reaches back to the last id: refetch your state, then carry on.
es.addEventListener('hub.reset', print)
// A dropped connection: EventSource reconnects by itself with Last-Event-ID. A refusal
// (any status but 200: 401, 403, also 503) closes it for good, as the standard says.
es.onerror = (err) => {
  if (err.code) console.error(`refused: ${err.code} ${err.message}`)
}
