#!/usr/bin/env python3
"""A minimal webhook receiver for trying Switchboard: verifies the Standard Webhooks signature
with the standard library only, prints each delivery and answers 204.

    python3 examples/receiver.py [port] [whsec_secret]
"""
import base64
import hashlib
import hmac
import http.server
import sys
import time

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
SECRET = sys.argv[2] if len(sys.argv) > 2 else "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))


def valid(msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    if abs(time.time() - int(timestamp or 0)) > 300:
        return False
    mac = hmac.new(KEY, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    return any(
        entry.startswith("v1,") and hmac.compare_digest(entry[3:], expected)
        for entry in header.split(" ")
    )


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        ok = valid(
            self.headers.get("webhook-id", ""),
            self.headers.get("webhook-timestamp", ""),
            body,
            self.headers.get("webhook-signature", ""),
        )
        print(f"{self.headers.get('webhook-id')} signature={'valid' if ok else 'INVALID'} {body[:200]!r}", flush=True)
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


print(f"receiving on http://127.0.0.1:{PORT}/hook", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
