"""A real SMTP server (aiosmtpd) for Switchboard's e-mail tests.

Listens on 127.0.0.1 on a free port and prints `READY <port>` once it accepts connections.
Every accepted message is parsed with Python's own `email` package and written to
`<out>/NNNN.json` (envelope, headers, text and HTML parts, whether the session used TLS and who
authenticated), so the tests assert on what a real mail parser sees.

Scripted replies, by the recipient's local part:
  reject…    -> 550 5.1.1 (permanent: the delivery fails)
  tempfail…  -> 451 4.3.0 the first time each address is seen, then accepted

Options:
  --tls none|starttls|tls  none (default), STARTTLS required before MAIL, or TLS from the start;
                           the certificate is issued for 127.0.0.1 and localhost by a test CA
                           (trustme) whose PEM is written to <out>/ca.pem
  --auth USER:PASSWORD     require AUTH (PLAIN or LOGIN) with these credentials

The server exits when its standard input closes, so it never outlives the test that started it.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def addresses(header):
    if header is None:
        return []
    return [{"name": a.display_name, "email": a.addr_spec} for a in header.addresses]


class Handler:
    def __init__(self, out):
        self.out = out
        self.count = 0
        self.tempfailed = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local.startswith("tempfail") and address not in self.tempfailed:
            self.tempfailed.add(address)
            return "451 4.3.0 <%s>: Temporary failure, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": addresses(message["From"]),
            "to": addresses(message["To"]),
            "cc": addresses(message["Cc"]),
            "bcc": addresses(message["Bcc"]),
            "reply_to": addresses(message["Reply-To"]),
            "subject": str(message["Subject"]) if message["Subject"] is not None else None,
            "message_id": message["Message-ID"],
            "content_type": message.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            # The client's port: equal for two messages sent over one (pooled) connection.
            "peer_port": session.peer[1],
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": login,
        }
        name = os.path.join(self.out, "%04d.json" % self.count)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(name + ".tmp", name)
        return "250 2.0.0 Ok: queued as %d" % self.count


def tls_context(out):
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(os.path.join(out, "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--tls", choices=["none", "starttls", "tls"], default="none")
    parser.add_argument("--auth")
    args = parser.parse_args()

    handler = Handler(args.out)
    context = tls_context(args.out) if args.tls != "none" else None
    credentials = tuple(args.auth.split(":", 1)) if args.auth else None

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and credentials is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def factory():
        return SMTP(
            handler,
            hostname="switchboard-test",
            tls_context=context if args.tls == "starttls" else None,
            require_starttls=args.tls == "starttls",
            authenticator=authenticator if credentials else None,
            auth_required=credentials is not None,
            # aiosmtpd only knows of STARTTLS; with TLS from the start (or none, on loopback)
            # AUTH is allowed as is.
            auth_require_tls=args.tls == "starttls",
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory,
        host="127.0.0.1",
        port=0,
        ssl=context if args.tls == "tls" else None,
    )
    port = server.sockets[0].getsockname()[1]
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print("READY %d" % port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
