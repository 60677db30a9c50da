#!/usr/bin/env python3
"""A tiny real SMTP server for tests: stores every accepted message as a .eml file.

Usage:
    smtp-sink.py --host 127.0.0.1 --port PORT --maildir DIR [--reject] [--refuse-rcpt ADDR]... [--auth USER:PASS]
                 [--tls-cert PEM --tls-key PEM (--starttls | --implicit-tls)]

* Listens on HOST:PORT (PORT 0 picks a free port) and prints exactly one line
  `READY <port>` on stdout (flushed) once it accepts connections.
* Each accepted message is written to DIR as `<ns-timestamp>-<uuid>.eml`, the raw
  bytes received after DATA, atomically (written to a hidden `.tmp-*` name in DIR,
  fsynced, then renamed). Before the .eml appears, a sidecar `<same>.json` is
  written (also atomically) with the envelope: {"mail_from", "rcpt_tos", "peer"}.
  Readers should only look at `*.eml` files.
* --reject answers `451 4.3.0 ...` to every DATA (simulated transient trouble);
  nothing is stored.
* --refuse-rcpt ADDR answers `550 5.1.1 ...` to `RCPT TO:<ADDR>` (repeatable), accepting others.
* --auth USER:PASS advertises AUTH PLAIN/LOGIN without TLS and requires it.
* --tls-cert/--tls-key with --starttls offers STARTTLS and requires it before MAIL;
  with --implicit-tls the socket speaks TLS from the first byte (SMTPS).
* Exits on SIGTERM/SIGINT, and by itself when its parent process dies.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import time
import uuid
import warnings

from aiosmtpd.smtp import SMTP, AuthResult


def write_atomic(directory, name, data):
    tmp = os.path.join(directory, ".tmp-" + uuid.uuid4().hex)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, name))


class SinkHandler:
    def __init__(self, maildir, reject, refuse_rcpt=()):
        self.maildir = maildir
        self.reject = reject
        self.refuse_rcpt = {a.lower() for a in refuse_rcpt}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse_rcpt:
            return "550 5.1.1 <%s>: Recipient address rejected (smtp-sink --refuse-rcpt)" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.reject:
            return "451 4.3.0 Requested action aborted: simulated SMTP trouble (smtp-sink --reject)"
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        stem = "%d-%s" % (time.time_ns(), uuid.uuid4().hex)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": list(session.peer) if isinstance(session.peer, tuple) else session.peer,
        }
        try:
            write_atomic(self.maildir, stem + ".json", json.dumps(meta).encode())
            write_atomic(self.maildir, stem + ".eml", raw)
        except OSError as e:
            print("smtp-sink: cannot store message: %s" % e, file=sys.stderr, flush=True)
            return "451 4.3.0 Cannot store message"
        return "250 OK stored as %s.eml" % stem


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", None)
        pw = getattr(auth_data, "password", None)
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        if isinstance(pw, bytes):
            pw = pw.decode("utf-8", "replace")
        if login == user and pw == password:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: let aiosmtpd answer "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)

    return authenticator


async def watch_parent(stop):
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass


async def main():
    p = argparse.ArgumentParser(description="SMTP sink for tests")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--maildir", required=True)
    p.add_argument("--reject", action="store_true", help="answer 451 to every DATA")
    p.add_argument("--refuse-rcpt", metavar="ADDR", action="append", default=[],
                   help="answer 550 to RCPT TO:<ADDR> (repeatable); other recipients are accepted")
    p.add_argument("--auth", metavar="USER:PASS", help="require AUTH with these credentials (no TLS)")
    p.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (PEM)")
    p.add_argument("--tls-key", metavar="PEM", help="server private key (PEM)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--starttls", action="store_true", help="offer and require STARTTLS")
    mode.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key) or bool(args.tls_cert) != (args.starttls or args.implicit_tls):
        p.error("--tls-cert, --tls-key and one of --starttls/--implicit-tls go together")
    tls_context = None
    if args.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)

    maildir = os.path.abspath(args.maildir)
    os.makedirs(maildir, exist_ok=True)
    handler = SinkHandler(maildir, args.reject, args.refuse_rcpt)

    smtp_kwargs = {"enable_SMTPUTF8": True}
    if args.auth:
        # Plain-text AUTH is what tests want here; keep stderr quiet about it.
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        user, _, password = args.auth.partition(":")
        smtp_kwargs.update(
            authenticator=make_authenticator(user, password),
            auth_required=True,
            auth_require_tls=False,
        )

    server_ssl = None
    if args.starttls:
        smtp_kwargs.update(tls_context=tls_context, require_starttls=True)
    elif args.implicit_tls:
        server_ssl = tls_context

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test", **smtp_kwargs),
        host=args.host,
        port=args.port,
        ssl=server_ssl,
    )
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.ensure_future(watch_parent(stop))
    await stop.wait()
    watcher.cancel()
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=2.0)
    except asyncio.TimeoutError:
        pass


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
