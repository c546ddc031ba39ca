// Follow the hub from a web page with the browser's own EventSource (a plain script:
// defines followHub). `url` is the hub's origin, e.g. location.origin. Returns the source.
function followHub(url, {token, topics = [], lastEventId, onEvent, onReset}) {
  const events = new URL("/events", url);
  // The token in the query is accepted by default. A same-origin app can set the
  // `hub_token` cookie instead and leave `token` out: EventSource sends cookies.
  if (token) events.searchParams.set("token", token);
  for (const topic of topics) events.searchParams.append("topic", topic);
  // For the first connect only (the last id the app showed, or "earliest"): on its own
  // reconnects EventSource sends the Last-Event-ID header itself, and the header wins.
  if (lastEventId) events.searchParams.set("lastEventId", lastEventId);
  const source = new EventSource(events);

  // Every stream opens with a named `hub.open` event carrying the cursor (EventSource keeps
  // it for its reconnects), so `onmessage` never sees it; heartbeats are comments, which
  // EventSource never shows. `data` is the published text: a string as sent, any other
  // value as its JSON (JSON.parse it if you publish objects). Events published with a
  // type of their own reach only source.addEventListener(type, ...).
  source.onmessage = (e) => onEvent({id: e.lastEventId, type: e.type, data: e.data});
  // History no longer reaches back to where the stream resumed: refetch your state.
  source.addEventListener("hub.reset", (e) => onReset(JSON.parse(e.data)));
  return source;
}
