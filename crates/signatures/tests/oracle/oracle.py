#!/usr/bin/env python3
"""Official-SDK oracle for `crates/signatures/tests/sdk_oracles.rs`.

Reads one JSON request, or a JSON list of requests (batching: one process for many cases), on
stdin and writes the answer (an object, or a list in the same order) on stdout.

Request:  {"scheme": S, "op": "sign" | "verify", ...fields below..., "id": optional, echoed}
Answers:  sign   -> {"ok": true, ...scheme outputs...}
          verify -> {"ok": true, "valid": bool, "raised": "Type: message" | null}
          any unexpected failure -> {"ok": false, "error": "..."}

Every signature is made and checked by the provider's official SDK function named below; the
only code here is plumbing (JSON in/out, freezing the SDK's clock, building a form-params
container the SDK accepts). The one exception is SendGrid signing: the SDK has no signer, so
`sendgrid`/`sign` signs per the spec with `cryptography` (the library the SDK verifies with).

| scheme           | sign                                             | verify                                              |
|------------------|--------------------------------------------------|-----------------------------------------------------|
| stripe           | stripe.WebhookSignature.generate_signature_header | stripe.Webhook.construct_event (JSON objects) or    |
|                  |                                                  | stripe.WebhookSignature.verify_header, tolerance 300 |
| slack            | SignatureVerifier.generate_signature             | SignatureVerifier(secret, clock=frozen).is_valid_request |
| twilio           | RequestValidator.compute_signature (+ compute_hash) | RequestValidator.validate (+ get_signature_algorithm) |
| sendgrid         | (no SDK signer) cryptography ECDSA P-256/SHA-256 | EventWebhook.verify_signature                       |
| standardwebhooks | standardwebhooks.webhooks.Webhook.sign           | Webhook.verify (clock frozen), json_parse=False     |
| svix             | svix.webhooks.Webhook.sign                       | svix.webhooks.Webhook.verify (clock frozen)         |

Fields (all bodies are JSON strings: every SDK here works on `str`):
  stripe            sign: secrets[], timestamp:int, body        -> header
                    verify: secret, header, body, now:int        (tolerance 300, the SDK default)
  slack             sign: secret, timestamp:str, body            -> signature
                    verify: secret, timestamp:str, signature, body, now:int
  twilio            sign: secret, url, algorithm?, and params[[k,v]...] (form) or json_body
                          -> signature (+ url: the signed URL with bodySHA256 for json_body)
                    verify: secret, url, signature, settings_header?, and form_body (raw,
                          parsed like a web framework would) or json_body
  sendgrid          sign: private_key (base64 PKCS#8 DER), timestamp:str, body
                          -> signature, public_key, high_s
                    verify: public_key (base64 DER SPKI), signature, timestamp:str, body
  standardwebhooks  sign: secrets[], msg_id, timestamp:int, body -> signature (space-joined)
  / svix            verify: secret, headers{}, body, now:int

If an SDK module cannot be imported, the script prints {"missing_module": NAME, "error": ...}
and exits with status 3 so that the Rust tests can report SKIPPED (or fail in CI).
"""

import base64
import contextlib
import datetime as _datetime
import importlib
import json
import sys
from unittest import mock
from urllib.parse import parse_qsl

EXIT_MISSING_MODULE = 3

SDK_MODULES = {
    "stripe": "stripe",
    "slack": "slack_sdk.signature",
    "twilio": "twilio.request_validator",
    "sendgrid": "sendgrid.helpers.eventwebhook",
    "standardwebhooks": "standardwebhooks.webhooks",
    "svix": "svix.webhooks",
}


class MissingModule(Exception):
    """An SDK (or a library it needs) is not installed."""

    def __init__(self, module, error):
        super().__init__(module)
        self.module = module
        self.error = error


_loaded = {}


def sdk(scheme):
    """Imports the SDK module for `scheme` (once)."""
    name = SDK_MODULES[scheme]
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(name)
        except ImportError as err:
            raise MissingModule(name, repr(err)) from err
    return _loaded[name]


def raised(err):
    return "%s: %s" % (type(err).__name__, err)


# ---------------------------------------------------------------------------------------------
# Clock freezing (schemes.md §10.4).


class _FrozenTime:
    """Stands in for the `time` module inside `stripe._webhook` (only `time()` is used)."""

    def __init__(self, now):
        self._now = float(now)

    def time(self):
        return self._now


def frozen_datetime(now):
    """A `datetime` subclass whose `now()` is fixed; patched into `standardwebhooks.webhooks`."""

    class FrozenDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return _datetime.datetime.fromtimestamp(now, tz=tz)

    return FrozenDatetime


class FrozenClock:
    """A `slack_sdk.signature.Clock` that always returns `now`."""

    def __init__(self, now):
        self._now = float(now)

    def now(self):
        return self._now


# ---------------------------------------------------------------------------------------------
# Stripe


def stripe_sign(req):
    stripe = sdk("stripe")
    # `generate_signature_header` is the SDK's own signer ("Useful for signing payloads in unit
    # tests"; it calls the private `_compute_signature`). It takes one secret; during a roll
    # Stripe sends one `v1` per secret, so the `v1=` parts of one call per secret are joined.
    header = None
    for secret in req["secrets"]:
        one = stripe.WebhookSignature.generate_signature_header(
            req["body"], secret, timestamp=req["timestamp"]
        )
        header = one if header is None else header + "," + one.split(",", 1)[1]
    return {"header": header}


def stripe_verify(req):
    stripe = sdk("stripe")
    import stripe._webhook as webhook_module  # the module whose `time` the SDK reads

    body = req["body"]
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    with mock.patch.object(webhook_module, "time", _FrozenTime(req["now"])):
        try:
            if isinstance(parsed, dict) and parsed.get("object") != "v2.core.event":
                # What applications call: verifies (tolerance 300), then parses the event.
                stripe.Webhook.construct_event(
                    body, req["header"], req["secret"], api_key="sk_test_oracle"
                )
            else:
                stripe.WebhookSignature.verify_header(
                    body, req["header"], req["secret"], tolerance=stripe.Webhook.DEFAULT_TOLERANCE
                )
        except stripe.SignatureVerificationError as err:
            return {"valid": False, "raised": raised(err)}
    return {"valid": True, "raised": None}


# ---------------------------------------------------------------------------------------------
# Slack


def slack_sign(req):
    signature = sdk("slack").SignatureVerifier(req["secret"])
    return {"signature": signature.generate_signature(timestamp=req["timestamp"], body=req["body"])}


def slack_verify(req):
    signature = sdk("slack")
    verifier = signature.SignatureVerifier(req["secret"], clock=FrozenClock(req["now"]))
    headers = {
        "X-Slack-Request-Timestamp": req["timestamp"],
        "X-Slack-Signature": req["signature"],
    }
    try:
        return {"valid": bool(verifier.is_valid_request(req["body"], headers)), "raised": None}
    except ValueError as err:  # the SDK raises on a timestamp `int()` refuses
        return {"valid": False, "raised": raised(err)}


# ---------------------------------------------------------------------------------------------
# Twilio


class FormParams(dict):
    """`name -> [values]`, exposing `getall` like Flask/aiohttp `MultiDict`, which
    `RequestValidator.get_values` supports for repeated keys."""

    @classmethod
    def from_pairs(cls, pairs):
        params = cls()
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        return params

    def getall(self, name):
        return self[name]


def twilio_sign(req):
    module = sdk("twilio")
    validator = module.RequestValidator(req["secret"])
    algorithm = req.get("algorithm")
    if "json_body" in req:
        # Twilio adds `bodySHA256=<compute_hash(body)>` to the query and signs the URL alone.
        url = req["url"]
        separator = "&" if "?" in url else "?"
        url = url + separator + "bodySHA256=" + validator.compute_hash(req["json_body"])
        return {"url": url, "signature": validator.compute_signature(url, {}, algorithm)}
    params = FormParams.from_pairs(req["params"])
    return {"signature": validator.compute_signature(req["url"], params, algorithm)}


def twilio_verify(req):
    module = sdk("twilio")
    validator = module.RequestValidator(req["secret"])
    algorithm = module.get_signature_algorithm(req.get("settings_header"))
    if "json_body" in req:
        params = req["json_body"]
    else:
        # What Flask/Django hand the app for an x-www-form-urlencoded body.
        params = FormParams.from_pairs(parse_qsl(req["form_body"], keep_blank_values=True))
    valid = validator.validate(req["url"], params, req["signature"], algorithm=algorithm)
    return {"valid": bool(valid), "raised": None}


# ---------------------------------------------------------------------------------------------
# SendGrid


def sendgrid_sign(req):
    # NOT an SDK function: the SDK only verifies. Signs per the spec (ECDSA P-256 with SHA-256
    # over `timestamp + body`, base64 of the DER signature) with `cryptography`, randomized k,
    # as a real signer would; about half of these signatures have a high S.
    sdk("sendgrid")  # the verifier must be present too (it depends on `cryptography`)
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    except ImportError as err:
        raise MissingModule("cryptography", repr(err)) from err

    key = serialization.load_der_private_key(base64.b64decode(req["private_key"]), password=None)
    der = key.sign((req["timestamp"] + req["body"]).encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    _, s = decode_dss_signature(der)
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "signature": base64.b64encode(der).decode("ascii"),
        "public_key": base64.b64encode(public).decode("ascii"),
        "high_s": s > order // 2,
    }


def sendgrid_verify(req):
    module = sdk("sendgrid")
    try:
        webhook = module.EventWebhook(public_key=req["public_key"])
        valid = webhook.verify_signature(req["body"], req["signature"], req["timestamp"])
    except Exception as err:  # noqa: BLE001 - malformed base64/DER raises instead of False
        return {"valid": False, "raised": raised(err)}
    return {"valid": bool(valid), "raised": None}


# ---------------------------------------------------------------------------------------------
# Standard Webhooks and Svix


def _webhook_class(scheme):
    return sdk(scheme).Webhook


def sw_sign(req, scheme):
    webhook = _webhook_class(scheme)
    when = _datetime.datetime.fromtimestamp(req["timestamp"], tz=_datetime.timezone.utc)
    signature = " ".join(
        webhook(secret).sign(req["msg_id"], when, req["body"]) for secret in req["secrets"]
    )
    return {"signature": signature}


def sw_verify(req, scheme):
    webhook = _webhook_class(scheme)(req["secret"])
    import standardwebhooks.webhooks as clock_module  # svix 2.x wraps this module's Webhook

    with mock.patch.object(clock_module, "datetime", frozen_datetime(req["now"])):
        try:
            if scheme == "svix":
                webhook.verify(req["body"], req["headers"])
            else:
                webhook.verify(req["body"], req["headers"], json_parse=False)
        except Exception as err:  # noqa: BLE001 - WebhookVerificationError, or ValueError and
            # binascii.Error on malformed entries (schemes.md §1): all mean "rejected"
            return {"valid": False, "raised": raised(err)}
    return {"valid": True, "raised": None}


# ---------------------------------------------------------------------------------------------

HANDLERS = {
    ("stripe", "sign"): stripe_sign,
    ("stripe", "verify"): stripe_verify,
    ("slack", "sign"): slack_sign,
    ("slack", "verify"): slack_verify,
    ("twilio", "sign"): twilio_sign,
    ("twilio", "verify"): twilio_verify,
    ("sendgrid", "sign"): sendgrid_sign,
    ("sendgrid", "verify"): sendgrid_verify,
    ("standardwebhooks", "sign"): lambda req: sw_sign(req, "standardwebhooks"),
    ("standardwebhooks", "verify"): lambda req: sw_verify(req, "standardwebhooks"),
    ("svix", "sign"): lambda req: sw_sign(req, "svix"),
    ("svix", "verify"): lambda req: sw_verify(req, "svix"),
}


def handle(req):
    """Answers one request; raises MissingModule when an SDK is absent."""
    answer = {}
    if "id" in req:
        answer["id"] = req["id"]
    handler = HANDLERS.get((req.get("scheme"), req.get("op")))
    if handler is None:
        answer.update(ok=False, error="unknown scheme/op %r/%r" % (req.get("scheme"), req.get("op")))
        return answer
    try:
        answer.update(handler(req))
        answer["ok"] = True
    except MissingModule:
        raise
    except Exception as err:  # noqa: BLE001 - reported to the caller, which fails the test
        answer.update(ok=False, error=raised(err))
    return answer


def main():
    request = json.load(sys.stdin)
    try:
        if isinstance(request, list):
            answer = [handle(item) for item in request]
        else:
            answer = handle(request)
    except MissingModule as err:
        json.dump({"missing_module": err.module, "error": err.error}, sys.stdout)
        sys.stdout.write("\n")
        return EXIT_MISSING_MODULE
    json.dump(answer, sys.stdout, ensure_ascii=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
