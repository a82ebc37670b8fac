#!/usr/bin/env python3
"""A webhook receiver for Switchboard deliveries, verified with the official Standard Webhooks
library (`pip install standardwebhooks`) on the standard library's HTTP server.

    WEBHOOK_SECRET=whsec_… PORT=9100 python3 examples/receivers/python/receiver.py

Every POST (any path) is verified before anything else: missing webhook headers get 400, a bad
signature or a timestamp more than five minutes away gets 401. A verified delivery is answered
204 and printed once; a repeat of the same `webhook-id` (Switchboard retries, `resend`,
`recover`) is answered 204 again without being processed twice. The de-duplication set lives in
memory and is lost on restart: a real receiver records the ids in its database, in the same
transaction as the work the event triggers.
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = os.environ.get("WEBHOOK_SECRET", "")
if not SECRET.startswith("whsec_"):
    sys.exit("set WEBHOOK_SECRET to the endpoint's whsec_… secret")
PORT = int(os.environ.get("PORT", "9100"))
WEBHOOK = Webhook(SECRET)

seen: set[str] = set()
seen_lock = threading.Lock()
output_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Switchboard reuses connections

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        msg_id = self.headers.get("webhook-id", "")
        if not all(self.headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")):
            return self.answer(400, f"rejected {msg_id or '-'}: missing webhook headers")
        try:
            WEBHOOK.verify(body, dict(self.headers.items()), json_parse=False)
        except (WebhookVerificationError, ValueError) as error:  # ValueError: malformed header
            return self.answer(401, f"rejected {msg_id}: {error}")
        with seen_lock:
            duplicate = msg_id in seen
        if duplicate:
            return self.answer(204, f"duplicate {msg_id}")
        # Do the work here (or store it durably) before answering: a 2xx tells Switchboard it is
        # done. Only then remember the id, so that a failure here lets the retry through.
        try:
            event = json.dumps(json.loads(body), separators=(",", ":"))
        except ValueError:
            event = repr(body[:200])
        with seen_lock:
            seen.add(msg_id)
        self.answer(204, f"verified {msg_id} {event}")

    def answer(self, status: int, line: str):
        # One write per line under a lock: requests are handled on several threads, and
        # print() writes the text and the newline separately, so lines could interleave.
        with output_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
