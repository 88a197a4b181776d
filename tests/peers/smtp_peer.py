"""A local SMTP server for the email notifier tests (aiosmtpd): TLS from
the first byte (--implicit) or STARTTLS required, AUTH required (PLAIN and
LOGIN) with one user and password. Logs every message as one JSON line
(envelope and the raw message). Prints `ready` once it listens."""

import argparse
import asyncio
import json
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--user", default="edgeguard")
parser.add_argument("--password", default="s3cret")
parser.add_argument("--implicit", action="store_true", help="TLS from the first byte (smtps)")
args = parser.parse_args()
lock = threading.Lock()

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(args.cert, args.key)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == args.user
        and auth_data.password.decode() == args.password
    )
    if ok:
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")


class Handler:
    async def handle_DATA(self, server, session, envelope):
        entry = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            # With --implicit every byte is TLS (aiosmtpd only tracks STARTTLS).
            "tls": args.implicit or session.ssl is not None,
        }
        with lock:
            with open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        return "250 OK"


common = dict(
    hostname="127.0.0.1",
    port=args.port,
    authenticator=authenticator,
    auth_required=True,
    # STARTTLS mode: AUTH only after it. Implicit TLS: aiosmtpd does not
    # count that connection as TLS, so it must not ask.
    auth_require_tls=not args.implicit,
)
if args.implicit:
    controller = Controller(Handler(), ssl_context=context, server_hostname="127.0.0.1", **common)
else:
    controller = Controller(Handler(), tls_context=context, require_starttls=True, **common)
controller.start()
print("ready", flush=True)
try:
    threading.Event().wait()
finally:
    controller.stop()
