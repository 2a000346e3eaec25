// webhook_receiver.mjs - an independent webhook receiver: node's http server verifying every
// delivery with the reference Standard Webhooks library (npm `standardwebhooks`, not libemine).
//
//   node webhook_receiver.mjs PORT SECRET OUT.jsonl [delay_ms]
//
// Appends one line per request to OUT.jsonl:
//   {"path","ok":true,"id":"evt_12","seq":12,"eventId","type","visibility","province","t",
//    "summary…" (each summary attribute the delivery carries)}
// or {"path","ok":false,"error":"…"}; answers 204 when the signature verifies, else 400.
// delay_ms holds each answer that long (to catch notify mid-delivery).  Prints
// "listening PORT" once ready.
import http from "node:http";
import { createWriteStream } from "node:fs";
import swh from "standardwebhooks";

const [portArg, secret, out, delayArg] = process.argv.slice(2);
const delay = Number(delayArg || 0);
const wh = new swh.Webhook(secret);
const log = createWriteStream(out, { flags: "a" });

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let line;
    try {
      const ev = wh.verify(body, req.headers); // throws on a bad signature or timestamp
      const id = req.headers["webhook-id"];
      line = {
        path: req.url, ok: true, id, seq: Number(String(id).replace(/^evt_/, "")),
        eventId: ev.id, type: ev.type, visibility: ev.visibility, province: ev.province,
        source: ev.source, t: Date.now(),
      };
      // The human summaries (summary, summarylang, summary<lang>) when the delivery has them.
      for (const [k, v] of Object.entries(ev)) if (k.startsWith("summary")) line[k] = v;
    } catch (e) {
      line = { path: req.url, ok: false, error: String(e && e.message ? e.message : e) };
    }
    setTimeout(() => {
      log.write(JSON.stringify(line) + "\n");
      res.writeHead(line.ok ? 204 : 400);
      res.end();
    }, delay);
  });
});
server.listen(Number(portArg), "127.0.0.1", () => console.log(`listening ${portArg}`));
process.on("SIGTERM", () => log.end(() => process.exit(0)));
