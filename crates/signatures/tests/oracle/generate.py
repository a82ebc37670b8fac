#!/usr/bin/env python3
"""Writes the committed SDK-made vectors, `crates/signatures/tests/data/sdk_generated.json`.

Run from the workspace root, with the SDKs of `.ci/requirements.txt` installed:

    python3 crates/signatures/tests/oracle/generate.py > crates/signatures/tests/data/sdk_generated.json

Every signature is made by the official SDK's signer through `oracle.py` (same calls as the live
tests) and checked again by the same SDK's verifier with its clock frozen at the vector's
timestamp before it is written. SendGrid's SDK has no signer: those vectors are signed per the
spec with `cryptography` (randomized ECDSA, alternating low-S and high-S signatures) and
verified by the SDK. `sdk_oracles.rs::committed_sdk_vectors_verify` checks all of them with the
Rust verifiers, no Python needed.

The output is deterministic (fixed seed, fixed keys, fixed timestamps) except for the SendGrid
signatures, which are randomized by design.
"""

import base64
import hashlib
import json
import os
import random
import sys
from importlib import metadata
from urllib.parse import urlencode

sys.dont_write_bytecode = True  # leave no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402  (the sibling script)

SEED = 20_240_601
BASE_TS = 1_700_000_000
PER_SCHEME = 10
COMMAND = (
    "python3 crates/signatures/tests/oracle/generate.py > "
    "crates/signatures/tests/data/sdk_generated.json"
)
PACKAGES = ["stripe", "slack_sdk", "twilio", "sendgrid", "standardwebhooks", "svix", "cryptography"]
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

rng = random.Random(SEED)

UNICODE = ["é", "ü", "ß", "日本", "語", "✓", "€", "😀", "🦀", "👩\u200d💻", "e\u0301", "العربية",
           "\u2028", "\ufffd", "Ω"]
CONTROL = ["\t", "\n", "\r\n", "\x00", "\x1b", "\x7f"]
PUNCT = ["&", "=", "+", "%", "%20", "#", "?", "/", "\\", '"', "'", "<", ">", ";", ",", " "]
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def alnum(n):
    return "".join(rng.choice(ALNUM) for _ in range(n))


def hexstr(n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def text(max_pieces, control=True):
    pieces = []
    for _ in range(rng.randint(0, max_pieces)):
        roll = rng.randrange(10)
        if roll < 5:
            pieces.append(alnum(rng.randint(1, 8)))
        elif roll < 7:
            pieces.append(rng.choice(UNICODE))
        elif roll < 8 and control:
            pieces.append(rng.choice(CONTROL))
        else:
            pieces.append(rng.choice(PUNCT))
    return "".join(pieces)


def json_value(depth):
    roll = rng.randrange(7 if depth else 5)
    if roll == 0:
        return text(6)
    if roll == 1:
        return rng.randint(-(2**53), 2**53)
    if roll == 2:
        return rng.choice([True, False, None])
    if roll == 3:
        return round(rng.uniform(-1e6, 1e6), 2)
    if roll == 4:
        return rng.choice(["evt_" + alnum(24), "", "héllo ✓ 日本"])
    if roll == 5:
        return json_object(depth - 1)
    return [json_value(depth - 1) for _ in range(rng.randint(0, 3))]


def json_object(depth):
    keys = ["id", "type", "data", "amount", "object", "created", "note", "email"]
    return {
        (rng.choice(keys) if rng.randrange(2) else text(3, control=False) or "k"): json_value(depth)
        for _ in range(rng.randint(1, 5))
    }


def body(kind=None):
    kind = rng.randrange(8) if kind is None else kind
    if kind == 0:
        return json.dumps(json_object(3), separators=(",", ":"), ensure_ascii=False)
    if kind == 1:
        return json.dumps(json_object(2), indent=2, ensure_ascii=False) + "\r\n"
    if kind == 2:
        return json.dumps(json_object(3))  # ASCII with \\uXXXX escapes, Python's default spacing
    if kind == 3:
        events = [{"email": alnum(6) + "@example.com", "event": "processed", "sg_event_id": alnum(22),
                   "timestamp": BASE_TS, "note": text(4, control=False)} for _ in range(rng.randint(1, 3))]
        return json.dumps(events, separators=(",", ":"), ensure_ascii=False) + "\r\n"
    if kind == 4:
        return text(30)  # not JSON: raw control characters, NUL, unicode
    if kind == 5:
        return "\ufeff" + json.dumps(json_object(1), ensure_ascii=False)
    if kind == 6:
        return urlencode([("token", alnum(24)), ("command", "/deploy"), ("text", text(5, control=False))])
    return ""


def call(request):
    answer = oracle.handle(request)
    if not answer.get("ok"):
        raise SystemExit("oracle.py failed: %r for %r" % (answer, request))
    return answer


def sdk_verified(request):
    answer = call(dict(request, op="verify"))
    if not answer["valid"]:
        raise SystemExit("the SDK rejected its own vector: %r for %r" % (answer, request))
    return True


def timestamp(i):
    return BASE_TS + i * 7_919


# ---------------------------------------------------------------------------------------------


def stripe_vectors():
    out = []
    for i in range(PER_SCHEME):
        secrets = [
            "whsec_" + (alnum(32) if rng.randrange(2) else hexstr(64))
            for _ in range(1 + i % 3)
        ]
        ts, payload = timestamp(i), body(i % 8)
        header = call({"scheme": "stripe", "op": "sign", "secrets": secrets, "timestamp": ts,
                       "body": payload})["header"]
        for secret in secrets:
            sdk_verified({"scheme": "stripe", "secret": secret, "header": header, "body": payload,
                          "now": ts})
        out.append({
            "scheme": "stripe",
            "signer": "stripe.WebhookSignature.generate_signature_header, once per secret",
            "verifier": "stripe.Webhook.construct_event / WebhookSignature.verify_header",
            "inputs": {"secrets": secrets, "timestamp": ts, "body": payload},
            "headers": {"Stripe-Signature": header},
        })
    return out


def slack_vectors():
    out = []
    for i in range(PER_SCHEME):
        secret = hexstr(32)
        ts = str(timestamp(i))
        if i == 3:
            ts = "0" + ts  # the raw header string is signed
        payload = body(6 if i % 2 else i % 8)
        signature = call({"scheme": "slack", "op": "sign", "secret": secret, "timestamp": ts,
                          "body": payload})["signature"]
        sdk_verified({"scheme": "slack", "secret": secret, "timestamp": ts,
                      "signature": signature, "body": payload, "now": int(ts)})
        out.append({
            "scheme": "slack",
            "signer": "slack_sdk.signature.SignatureVerifier.generate_signature",
            "verifier": "slack_sdk.signature.SignatureVerifier(clock=...).is_valid_request",
            "inputs": {"secret": secret, "timestamp": int(ts), "body": payload},
            "headers": {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature},
        })
    return out


TWILIO_NAMES = ["AccountSid", "Body", "CallSid", "Caller", "Digits", "From", "MediaUrl0",
                "NumMedia", "To", "callsid", "a b", "Ünïcode", "x+y", "a=b"]
TWILIO_HOSTS = ["example.com", "api.example.org", "Mixed.Case.Example.com", "hooks.my-app.io"]


def twilio_url(i, query=True):
    """(signed base URL, request base URL): the port variants `validate` accepts."""
    scheme = "http" if i % 5 == 4 else "https"
    default = "443" if scheme == "https" else "80"
    host = TWILIO_HOSTS[i % len(TWILIO_HOSTS)]
    path = rng.choice(["", "/", "/twilio/sms", "/hooks/caf%C3%A9/", "/a%20b/status"])
    q = ""
    if query and i % 3:
        q = "?" + "&".join(rng.choice(["foo=1", "bar=2", "foo=3", "q=a+b", "e=%E2%9C%93", "empty="])
                           for _ in range(rng.randint(1, 3)))
    ports = [(None, None), (default, None), (None, default), ("8443", "8443"), (None, "3000")][i % 5]

    def url(port):
        return "%s://%s%s%s%s" % (scheme, host, ":" + port if port else "", path, q)

    return url(ports[0]), url(ports[1])


def twilio_secret(i):
    if i % 4 == 3:
        return alnum(32), "HMAC_SHA256", "key=webhooks_sharedkey_%s,algorithm=HMAC_SHA256" % alnum(8)
    return hexstr(32), "HMAC_SHA1", None


def twilio_vectors():
    out = []
    for i in range(PER_SCHEME):
        secret, algorithm, settings = twilio_secret(i)
        signed_url, request_url = twilio_url(i)
        params = []
        for _ in range(rng.randint(0 if i == 0 else 1, 7)):
            name = rng.choice(TWILIO_NAMES)
            value = rng.choice(["+1415" + "".join(rng.choice("0123456789") for _ in range(7)),
                                "CA" + hexstr(32), "", text(5), "Hello world", "a+b=c&d"])
            params.append((name, value))
            if rng.randrange(4) == 0:
                params.append((name, rng.choice([value, text(3)])))  # repeated key
        wire = urlencode(params)
        signature = call({"scheme": "twilio", "op": "sign", "secret": secret, "url": signed_url,
                          "params": params, "algorithm": algorithm})["signature"]
        sdk_verified({"scheme": "twilio", "secret": secret, "url": request_url,
                      "signature": signature, "form_body": wire, "settings_header": settings})
        headers = {"X-Twilio-Signature": signature,
                   "Content-Type": "application/x-www-form-urlencoded"}
        if settings:
            headers["X-Twilio-Webhooks-Signature-Settings"] = settings
        out.append({
            "scheme": "twilio",
            "signer": "twilio.request_validator.RequestValidator.compute_signature",
            "verifier": "RequestValidator.validate (form params parsed with parse_qsl)",
            "inputs": {"secret": secret, "algorithm": algorithm, "signed_url": signed_url,
                       "url": request_url, "params": params, "body": wire},
            "headers": headers,
        })
    return out


def twilio_json_vectors():
    out = []
    for i in range(PER_SCHEME):
        secret, algorithm, settings = twilio_secret(i)
        signed_base, request_base = twilio_url(i)
        payload = body(i % 6)
        answer = call({"scheme": "twilio", "op": "sign", "secret": secret, "url": signed_base,
                       "json_body": payload, "algorithm": algorithm})
        # The request arrives at the request URL with the same bodySHA256 query parameter.
        request_url = request_base + answer["url"][len(signed_base):]
        sdk_verified({"scheme": "twilio", "secret": secret, "url": request_url,
                      "signature": answer["signature"], "json_body": payload,
                      "settings_header": settings})
        headers = {"X-Twilio-Signature": answer["signature"], "Content-Type": "application/json"}
        if settings:
            headers["X-Twilio-Webhooks-Signature-Settings"] = settings
        out.append({
            "scheme": "twilio-json",
            "signer": "RequestValidator.compute_hash + compute_signature over the URL with bodySHA256",
            "verifier": "RequestValidator.validate(url, raw body str, signature)",
            "inputs": {"secret": secret, "algorithm": algorithm, "signed_url": answer["url"],
                       "url": request_url, "body": payload},
            "headers": headers,
        })
    return out


def sw_vectors(scheme):
    out = []
    prefix = "svix" if scheme == "svix" else "webhook"
    for i in range(PER_SCHEME):
        sizes = [24, 32] if scheme == "svix" else [24, 25, 32, 33, 48, 64]
        secrets = ["whsec_" + base64.b64encode(rng.randbytes(rng.choice(sizes))).decode()
                   for _ in range(1 + i % 3)]
        msg_id = "msg_" + alnum(27)
        ts, payload = timestamp(i), body(i % 8)
        signature = call({"scheme": scheme, "op": "sign", "secrets": secrets, "msg_id": msg_id,
                          "timestamp": ts, "body": payload})["signature"]
        headers = {prefix + "-id": msg_id, prefix + "-timestamp": str(ts),
                   prefix + "-signature": signature}
        for secret in secrets:
            sdk_verified({"scheme": scheme, "secret": secret, "headers": headers, "body": payload,
                          "now": ts})
        out.append({
            "scheme": scheme,
            "signer": "%s.webhooks.Webhook.sign, once per secret, space-joined" % scheme,
            "verifier": "%s.webhooks.Webhook.verify (clock frozen)" % scheme,
            "inputs": {"secrets": secrets, "msg_id": msg_id, "timestamp": ts, "body": payload},
            "headers": headers,
        })
    return out


def sendgrid_vectors():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = []
    for i in range(PER_SCHEME):
        # Test keys only: scalar = sha256(label) mod (n - 1) + 1, as in schemes.md §8.
        label = "switchboard-sdk-generated-%d" % i
        scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (P256_ORDER - 1) + 1
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        ts, payload = str(timestamp(i)), body(3 if i % 2 else i % 8)
        want_high_s = i % 2 == 1
        while True:  # alternate low-S and high-S signatures (both are valid ECDSA)
            answer = call({"scheme": "sendgrid", "op": "sign",
                           "private_key": base64.b64encode(pkcs8).decode(), "timestamp": ts,
                           "body": payload})
            if answer["high_s"] == want_high_s:
                break
        sdk_verified({"scheme": "sendgrid", "public_key": answer["public_key"],
                      "signature": answer["signature"], "timestamp": ts, "body": payload})
        out.append({
            "scheme": "sendgrid",
            "signer": "cryptography ECDSA P-256/SHA-256 per spec (the SDK has no signer)",
            "verifier": "sendgrid.helpers.eventwebhook.EventWebhook.verify_signature",
            "key_label": label,
            "high_s": answer["high_s"],
            "inputs": {"public_key": answer["public_key"], "timestamp": int(ts), "body": payload},
            "headers": {"X-Twilio-Email-Event-Webhook-Signature": answer["signature"],
                        "X-Twilio-Email-Event-Webhook-Timestamp": ts},
        })
    return out


def main():
    vectors = (stripe_vectors() + slack_vectors() + twilio_vectors() + twilio_json_vectors()
               + sw_vectors("standardwebhooks") + sw_vectors("svix") + sendgrid_vectors())
    doc = {
        "about": "Signatures made by the official provider SDKs (SendGrid: by `cryptography` per "
                 "spec) and re-verified by the same SDK with its clock frozen at the vector's "
                 "timestamp. Checked without Python by sdk_oracles.rs::committed_sdk_vectors_verify.",
        "command": COMMAND,
        "sdk_versions": {name: metadata.version(name) for name in PACKAGES},
        "vectors": vectors,
    }
    json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
