// tcp_relay.mjs - a TCP relay that records what passes: listens on 127.0.0.1:PORT, forwards
// every connection to HOST:TARGET_PORT and appends every byte of both directions to CAPTURE
// (a wire capture without root).  Prints "ready" once listening; runs until killed.
//
//   node tests/lib/tcp_relay.mjs PORT HOST:TARGET_PORT CAPTURE
import { createServer, connect } from "node:net";
import { appendFileSync, writeFileSync } from "node:fs";

const [port, target, capture] = process.argv.slice(2);
const [host, tport] = target.split(":");
writeFileSync(capture, "");
const server = createServer((client) => {
  const upstream = connect(Number(tport), host);
  const record = (chunk) => appendFileSync(capture, chunk);
  client.on("data", (d) => { record(d); upstream.write(d); });
  upstream.on("data", (d) => { record(d); client.write(d); });
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.on("close", () => upstream.end());
  upstream.on("close", () => client.end());
});
server.listen(Number(port), "127.0.0.1", () => console.log("ready"));
