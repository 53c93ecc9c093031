// The Workers side of the Miniflare comparison: the same counter, queue consumer and
// alarms that Roost's benchmarks use, written as a Worker with Durable Objects.
import { DurableObject } from "cloudflare:workers";

const BATCH = 100;

// A durable read-modify-write, like benchmarks/counter.py's Counter.increment.
export class Counter extends DurableObject {
  async increment() {
    const n = (await this.ctx.storage.get("n")) ?? 0;
    await this.ctx.storage.put("n", n + 1);
    return n + 1;
  }

  async value() {
    return (await this.ctx.storage.get("n")) ?? 0;
  }
}

// Counts the distinct messages acked, duplicate deliveries and retries reported by the
// queue consumer (in memory, like the class counters of Roost's BenchConsumer).
export class Tally extends DurableObject {
  acked = new Set();
  duplicates = 0;
  retried = 0;

  add(ackedNumbers, retried) {
    for (const n of ackedNumbers) {
      if (this.acked.has(n)) this.duplicates += 1;
      else this.acked.add(n);
    }
    this.retried += retried;
  }

  read() {
    return { acked: this.acked.size, duplicates: this.duplicates, retried: this.retried };
  }
}

// Sets its alarm on request; when it fires, reports its lateness to the sink.
export class Alarmed extends DurableObject {
  async arm(due, group) {
    await this.ctx.storage.put({ due, group });
    await this.ctx.storage.setAlarm(due);
  }

  async alarm() {
    const { due, group } = Object.fromEntries(await this.ctx.storage.get(["due", "group"]));
    const late = Date.now() - due;
    await sink(this.env).record(group, late);
  }
}

// Collects alarm lateness (milliseconds) by group.
export class LatenessSink extends DurableObject {
  lateness = new Map();

  record(group, late) {
    if (!this.lateness.has(group)) this.lateness.set(group, []);
    this.lateness.get(group).push(late);
  }

  read(group) {
    return this.lateness.get(group) ?? [];
  }
}

function named(namespace, name) {
  return namespace.get(namespace.idFromName(name));
}

const tally = (env) => named(env.TALLY, "tally");
const sink = (env) => named(env.SINK, "sink");

function json(value) {
  return Response.json(value);
}

async function route(request, env) {
  const url = new URL(request.url);
  const parts = url.pathname.split("/").filter(Boolean);
  const post = request.method === "POST";
  // POST /actors/COUNTERS/{name}/increment and GET /actors/COUNTERS/{name}/, the paths
  // benchmarks/wrk.py sends to roost serve.
  if (post && parts.length === 4 && parts[0] === "actors" && parts[3] === "increment") {
    return json({ value: await named(env.COUNTERS, parts[2]).increment() });
  }
  if (!post && parts.length === 3 && parts[0] === "actors") {
    return json({ value: await named(env.COUNTERS, parts[2]).value() });
  }
  // POST /queue/send?start=N: one sendBatch of 100 messages numbered from N.
  if (post && url.pathname === "/queue/send") {
    const start = Number(url.searchParams.get("start"));
    await env.BENCH.sendBatch(Array.from({ length: BATCH }, (_, i) => ({ body: { n: start + i } })));
    return json({ sent: BATCH });
  }
  if (url.pathname === "/queue/tally") {
    return json(await tally(env).read());
  }
  // POST /alarms/arm?group=G with a JSON list of [name, due in ms since the epoch].
  if (post && url.pathname === "/alarms/arm") {
    const group = url.searchParams.get("group");
    const items = await request.json();
    await Promise.all(items.map(([name, due]) => named(env.ALARMED, name).arm(due, group)));
    return json({ armed: items.length });
  }
  if (url.pathname === "/alarms/lateness") {
    return json(await sink(env).read(url.searchParams.get("group")));
  }
  return new Response("not found", { status: 404 });
}

export default {
  fetch: route,

  // Acks every message, or retries those on their first attempt when told to.
  async queue(batch, env) {
    const failFirstAttempt = env.FAIL_FIRST_ATTEMPT === "1";
    const acked = [];
    let retried = 0;
    for (const message of batch.messages) {
      if (failFirstAttempt && message.attempts === 1) {
        message.retry({ delaySeconds: 0 });
        retried += 1;
      } else {
        message.ack();
        acked.push(message.body.n);
      }
    }
    await tally(env).add(acked, retried);
  },
};
