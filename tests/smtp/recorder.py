"""A real SMTP server on loopback for the tests (aiosmtpd): every message it accepts is
written, as received, to <dir>/<time>-<n>.eml (atomically: a reader never sees half a file).

    python3 tests/smtp/recorder.py --port 2525 --dir /tmp/mail
"""

import argparse
import itertools
import os
import signal
import threading
import time

from aiosmtpd.controller import Controller


class Record:
    def __init__(self, directory):
        self.directory = directory
        self.count = itertools.count()

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
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Record(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
