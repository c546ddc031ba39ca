// Appends lines to a durable stream with @durable-streams/client's IdempotentProducer
// (exactly once, even when a request is retried), one append per line of standard input.
//   node write.mjs <stream url> <producer id>    (DS_TOKEN: a publisher token)
import { createInterface } from "node:readline"
import { DurableStream, IdempotentProducer } from "@durable-streams/client"

const [url, producerId] = process.argv.slice(2)
const headers = { Authorization: `Bearer ${process.env.DS_TOKEN}` }
const handle = await DurableStream.create({ url, headers, contentType: "text/plain" })
const producer = new IdempotentProducer(handle, producerId, {
  autoClaim: true,
  onError: (err) => console.error("append failed:", err.message),
})
for await (const line of createInterface({ input: process.stdin })) {
  producer.append(line)
  await producer.flush() // one line, one append: the reader sees each as it comes
  process.stdout.write(`sent ${line}\n`)
}
await producer.detach() // the stream stays open (close() would close it)
