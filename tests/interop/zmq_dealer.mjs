// zmq_dealer.mjs - an independent producer: the npm `zeromq` binding (not libemine) speaking
// emine's documented producer protocol: a DEALER sends one frame of JSON per request and gets
// one frame of JSON back, {"results":[{id, source, status, seq, errors}]}.
//
//   node zmq_dealer.mjs ENDPOINT EVENTS.ndjson RESULTS.jsonl [inflight]
//
// Keeps `inflight` requests outstanding, re-sends on busy or after 5 s without an answer,
// prints "N events: accepted A duplicate D ... X events/s p50 Y ms p99 Z ms" and writes one
// result line per event.
import { Dealer, curveKeyPair } from "zeromq";
import { readFileSync, writeFileSync } from "node:fs";

const [endpoint, file, out, inflightArg] = process.argv.slice(2);
const lines = readFileSync(file, "utf8").split("\n").filter((l) => l.trim());
const inflight = Number(inflightArg || 64);
// With EMINE_CURVE_SERVER_KEY set (ingest's CURVE public key), encrypt with CurveZMQ as the
// keypair EMINE_CURVE_PUBLIC / EMINE_CURVE_SECRET (a new one when unset); else, with
// EMINE_PRODUCER / EMINE_PRODUCER_KEY set, authenticate with ZeroMQ PLAIN.
let auth = {};
if (process.env.EMINE_CURVE_SERVER_KEY) {
  const own = process.env.EMINE_CURVE_SECRET
    ? { publicKey: process.env.EMINE_CURVE_PUBLIC, secretKey: process.env.EMINE_CURVE_SECRET }
    : curveKeyPair();
  auth = {
    curveServerKey: process.env.EMINE_CURVE_SERVER_KEY,
    curvePublicKey: own.publicKey,
    curveSecretKey: own.secretKey,
  };
} else if (process.env.EMINE_PRODUCER_KEY) {
  auth = { plainUsername: process.env.EMINE_PRODUCER, plainPassword: process.env.EMINE_PRODUCER_KEY };
}
const sock = new Dealer({ receiveHighWaterMark: 0, sendHighWaterMark: 0, ...auth });
sock.connect(endpoint);

const byKey = new Map(); // source + " " + id -> index
const events = lines.map((raw, i) => {
  const e = JSON.parse(raw);
  byKey.set(e.source + " " + e.id, i);
  return { raw, sentAt: 0, result: null, latency: 0 };
});
let next = 0, done = 0;
const t0 = performance.now();

async function send(i) {
  events[i].sentAt = performance.now();
  await sock.send(events[i].raw);
}

const timer = setInterval(async () => {
  const now = performance.now();
  for (const e of events) {
    if (!e.result && e.sentAt && now - e.sentAt > 5000) await send(events.indexOf(e));
  }
}, 1000);

for (; next < Math.min(inflight, events.length); next++) await send(next);
for await (const [frame] of sock) {
  const reply = JSON.parse(frame.toString());
  for (const r of reply.results || []) {
    const i = byKey.get(r.source + " " + r.id);
    if (i === undefined || events[i].result) continue;
    if (r.status === "busy") {
      setTimeout(() => send(i), 50);
      continue;
    }
    events[i].result = r;
    events[i].latency = performance.now() - events[i].sentAt;
    done++;
    if (next < events.length) await send(next++);
  }
  if (done === events.length) break;
}
clearInterval(timer);
const secs = (performance.now() - t0) / 1000;
const lat = events.map((e) => e.latency).sort((a, b) => a - b);
const count = (s) => events.filter((e) => e.result.status === s).length;
writeFileSync(out, events.map((e) => JSON.stringify(e.result)).join("\n") + "\n");
console.log(
  `${events.length} events: accepted ${count("accepted")} duplicate ${count("duplicate")} ` +
    `conflict ${count("conflict")} rejected ${count("rejected")}; ` +
    `${(events.length / secs).toFixed(0)} events/s; ack latency p50 ${lat[Math.floor(lat.length / 2)].toFixed(1)} ms ` +
    `p99 ${lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))].toFixed(1)} ms`
);
sock.close();
