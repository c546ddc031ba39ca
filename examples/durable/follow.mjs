// Follows a durable stream on the hub with @durable-streams/client, as its README shows:
// every chunk of text printed as it arrives, with the offset to resume from. Retries by
// itself when the hub goes away (onError returns {}), and resumes where it was.
//   node follow.mjs <stream url> [offset]    (DS_TOKEN: a token that may read it)
import { stream } from "@durable-streams/client"

const [url, offset] = process.argv.slice(2)
const res = await stream({
  url,
  headers: { Authorization: `Bearer ${process.env.DS_TOKEN}` },
  offset: offset || "-1",
  live: true,
  onError: async () => ({}), // retry with the same parameters
})
res.subscribeText(async (chunk) => {
  process.stdout.write(JSON.stringify({ text: chunk.text, offset: chunk.offset }) + "\n")
  if (chunk.text.includes("[END]")) process.exit(0)
})
