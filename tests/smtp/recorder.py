"""A real SMTP server on loopback for the tests (aiosmtpd): every message it accepts is
written, as received, to <dir>/<time>-<n>.eml (atomically: a reader never sees half a file).

    python3 tests/smtp/recorder.py --port 2525 --dir /tmp/mail [--tls-cert C --tls-key K]

Recipients listed in <dir>/refuse (one address a line, read at each RCPT) are refused for
good (550), and each refusal is a line of <dir>/refused.log. With a certificate and key it
speaks TLS from the first byte (smtps).
"""

import argparse
import itertools
import os
import signal
import ssl
import threading
import time

from aiosmtpd.controller import Controller


class Record:
    def __init__(self, directory):
        self.directory = directory
        self.count = itertools.count()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        try:
            with open(os.path.join(self.directory, "refuse")) as f:
                refused = {line.strip().lower() for line in f}
        except FileNotFoundError:
            refused = set()
        if address.lower() in refused:
            with open(os.path.join(self.directory, "refused.log"), "a") as f:
                f.write(address + "\n")
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time_ns()}-{next(self.count)}.eml"
        temporary = os.path.join(self.directory, name + ".part")
        with open(temporary, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(temporary, os.path.join(self.directory, name))
        return "250 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    controller = Controller(
        Record(args.dir), hostname="127.0.0.1", port=args.port, ssl_context=tls
    )
    controller.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
