// Serves worker.mjs with Miniflare on a loopback port, its Durable Objects persisted under
// the directory given as the first argument. Prints "listening on URL" once ready, and
// disposes of Miniflare on SIGTERM or SIGINT.
//
// usage: node serve.mjs PERSIST_DIR [fail-first-attempt]
import { Log, LogLevel, Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";

const [persistDir, mode] = process.argv.slice(2);
if (!persistDir) {
  console.error("usage: node serve.mjs PERSIST_DIR [fail-first-attempt]");
  process.exit(2);
}

const mf = new Miniflare({
  modules: true,
  scriptPath: fileURLToPath(new URL("./worker.mjs", import.meta.url)),
  compatibilityDate: "2025-07-01",
  cf: false, // no request for Cloudflare's request metadata: everything stays on loopback
  log: new Log(LogLevel.WARN),
  host: "127.0.0.1",
  port: 0,
  durableObjects: {
    COUNTERS: "Counter",
    TALLY: "Tally",
    ALARMED: "Alarmed",
    SINK: "LatenessSink",
  },
  durableObjectsPersist: persistDir,
  bindings: { FAIL_FIRST_ATTEMPT: mode === "fail-first-attempt" ? "1" : "0" },
  queueProducers: { BENCH: "bench" },
  queueConsumers: {
    bench: { maxBatchSize: 100, maxBatchTimeout: 0.05, maxRetries: 3, retryDelay: 0 },
  },
});

const url = await mf.ready;
console.log(`listening on ${url}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
