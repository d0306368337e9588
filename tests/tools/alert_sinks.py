#!/usr/bin/env python3
"""Receivers for the alert end-to-end tests (tests/tests/alerts_e2e.rs), on 127.0.0.1 only.

smtp:    a real SMTP submission server (aiosmtpd) that requires STARTTLS and AUTH, and writes
         every accepted message as NNNN.eml plus NNNN.json (envelope, TLS, login, and the
         message parsed by Python's email package: headers, subject, text body).
smtps:   the same with implicit TLS (port 465 style) instead of STARTTLS.
webhook: an HTTPS server that writes every POST as NNNN.json (path, headers, body as text) and
         answers 200, or 503 while a file named FAIL exists in its folder.

Each prints READY on stdout once it listens. Files are written whole (temp file, then rename).
"""
import argparse
import asyncio
import email
import email.policy
import http.server
import itertools
import json
import os
import ssl
import sys
import threading


def write_json(folder, n, doc):
    tmp = os.path.join(folder, f".{n:04}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    os.replace(tmp, os.path.join(folder, f"{n:04}.json"))


def smtp(args, implicit=False):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    counter = itertools.count(1)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            n = next(counter)
            raw = envelope.original_content or envelope.content
            with open(os.path.join(args.dir, f"{n:04}.eml"), "wb") as f:
                f.write(raw)
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            body = msg.get_body(preferencelist=("plain",))
            write_json(
                args.dir,
                n,
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "tls": session.ssl is not None
                    or server.transport.get_extra_info("ssl_object") is not None,
                    "login": session.auth_data.login.decode()
                    if isinstance(session.auth_data, LoginPassword)
                    else None,
                    "headers": {k.lower(): str(v) for k, v in msg.items()},
                    "raw_headers": raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace"),
                    "subject": str(msg["subject"]),
                    "content_type": msg.get_content_type(),
                    "charset": msg.get_content_charset(),
                    "body": body.get_content() if body is not None else "",
                },
            )
            return "250 Message accepted for delivery"

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    if implicit:
        # aiosmtpd counts only STARTTLS as TLS for AUTH; the whole connection is TLS here.
        tls = {"ssl_context": ctx, "auth_require_tls": False}
    else:
        tls = {"tls_context": ctx, "require_starttls": True, "auth_require_tls": True}
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=args.port,
        authenticator=authenticator,
        auth_required=True,
        ready_timeout=30,
        **tls,
    )
    controller.start()
    print("READY", flush=True)
    try:
        threading.Event().wait()
    finally:
        controller.stop()


def webhook(args):
    counter = itertools.count(1)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if os.path.exists(os.path.join(args.dir, "FAIL")):
                self.send_response(503)
                self.end_headers()
                return
            with lock:
                n = next(counter)
                write_json(
                    args.dir,
                    n,
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode("utf-8"),
                    },
                )
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, fmt, *a):
            sys.stderr.write("webhook: " + (fmt % a) + "\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("READY", flush=True)
    server.serve_forever()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["smtp", "smtps", "webhook"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", default="relay")
    p.add_argument("--password", default="")
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    if args.mode == "webhook":
        webhook(args)
    else:
        smtp(args, implicit=args.mode == "smtps")


if __name__ == "__main__":
    main()
