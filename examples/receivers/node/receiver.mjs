// A webhook receiver for Switchboard deliveries, verified with the official Standard Webhooks
// library (npm package `standardwebhooks`) on Node's built-in HTTP server.
//
//   cd examples/receivers/node && npm ci
//   WEBHOOK_SECRET=whsec_… PORT=9100 node receiver.mjs
//
// Every POST (any path) is verified before anything else: missing webhook headers get 400, a
// bad signature or a timestamp more than five minutes away gets 401. A verified delivery is
// answered 204 and printed once; a repeat of the same `webhook-id` (Switchboard retries,
// `resend`, `recover`) is answered 204 again without being processed twice. The de-duplication
// set lives in memory and is lost on restart: a real receiver records the ids in its database,
// in the same transaction as the work the event triggers.

import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

const secret = process.env.WEBHOOK_SECRET ?? "";
if (!secret.startsWith("whsec_")) {
  console.error("set WEBHOOK_SECRET to the endpoint's whsec_… secret");
  process.exit(2);
}
const port = Number(process.env.PORT ?? 9100);
const webhook = new Webhook(secret);
const seen = new Set();

function answer(res, status, line) {
  console.log(line);
  res.writeHead(status, { "content-length": "0" });
  res.end();
}

const server = createServer((req, res) => {
  if (req.method !== "POST") {
    res.writeHead(405, { allow: "POST", "content-length": "0" });
    res.end();
    return;
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    // Verify the exact bytes received: never a re-serialised JSON object.
    const body = Buffer.concat(chunks).toString("utf8");
    const id = req.headers["webhook-id"];
    if (!id || !req.headers["webhook-timestamp"] || !req.headers["webhook-signature"]) {
      answer(res, 400, `rejected ${id ?? "-"}: missing webhook headers`);
      return;
    }
    try {
      webhook.verify(body, req.headers, { jsonParse: false });
    } catch (error) {
      answer(res, 401, `rejected ${id}: ${error.message}`);
      return;
    }
    if (seen.has(id)) {
      answer(res, 204, `duplicate ${id}`);
      return;
    }
    // Do the work here (or store it durably) before answering: a 2xx tells Switchboard it is
    // done. Only then remember the id, so that a failure here lets the retry through.
    let event;
    try {
      event = JSON.stringify(JSON.parse(body));
    } catch {
      event = JSON.stringify(body.slice(0, 200));
    }
    seen.add(id);
    answer(res, 204, `verified ${id} ${event}`);
  });
});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
