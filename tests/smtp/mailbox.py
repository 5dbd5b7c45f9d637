"""A real SMTP server for the tests: aiosmtpd on a loopback port, keeping
every message it accepts.

    python3 tests/smtp/mailbox.py --port 2525 --dir /tmp/box

Each accepted message is appended to DIR/log.jsonl as one JSON line (arrival
time, envelope sender and recipients, decoded subject and plain-text body,
Message-ID) and kept raw as DIR/NNNNNN.eml. Prints "ready" once it listens.
"""

import argparse
import email
import json
import os
import signal
import threading
import time

from aiosmtpd.controller import Controller
from email.header import decode_header, make_header


def text_part(message, subtype):
    """The decoded text/<subtype> part, or None."""
    for part in message.walk():
        if part.get_content_type() == "text/" + subtype:
            payload = part.get_payload(decode=True) or b""
            return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return None


class Keeper:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()
        self.log = open(os.path.join(directory, "log.jsonl"), "a", buffering=1)

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        # The legacy parser: several times faster than the modern policy, so
        # the server keeps up with senders well above their rate limits.
        message = email.message_from_bytes(raw)
        body = text_part(message, "plain")
        html = text_part(message, "html")
        with self.lock:
            self.count += 1
            name = "%06d.eml" % self.count
            with open(os.path.join(self.directory, name), "wb") as f:
                f.write(raw)
            self.log.write(
                json.dumps(
                    {
                        "at": time.time(),
                        "file": name,
                        "from": envelope.mail_from,
                        "to": envelope.rcpt_tos,
                        "subject": str(make_header(decode_header(message["subject"] or ""))),
                        "message_id": str(message["message-id"] or ""),
                        "text": body if body is not None else "",
                        "has_html": html is not None,
                    }
                )
                + "\n"
            )
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Keeper(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
