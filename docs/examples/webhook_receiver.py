#!/usr/bin/env python3
"""A Portcullis webhook receiver, standard library only (docs/webhooks.md).

    python3 webhook_receiver.py --serve 8000 SECRET_FILE   # a small HTTP receiver
    python3 webhook_receiver.py --check                    # the test mode, below

--check reads JSON lines on stdin, each {"secrets", "header", "body", "now"}, and prints one
line per delivery: "<status> <outcome>", e.g. "204 accepted", "204 duplicate",
"401 signature". The replay guard lasts for the whole run, as in a server. The crate
portcullis-webhook runs it in its tests against its own signatures.
"""

import hashlib
import hmac
import json
import sys
import time

WINDOW = 300  # seconds either way between the receiver's clock and t
MAX_HEADER_LEN = 4096
MAX_SIGNATURES = 8
LOWER_HEX = set("0123456789abcdef")
KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")
DIGITS = set("0123456789")


class Rejected(Exception):
    """A refused delivery; the argument is the reason: malformed, no_secret, signature, window."""


def secret_lines(secrets):
    """The keys: each line of the secret file as UTF-8 bytes, NOT base64-decoded."""
    keys = []
    for line in secrets.split("\n"):
        line = line.strip(" \t\r")
        if line:
            keys.append(line.encode("utf-8"))
    return keys


def verify(secrets, header, body, now, window=WINDOW):
    """Raise Rejected unless the Portcullis-Signature `header` signs the raw `body` bytes
    under a line of `secrets`, with t within `window` seconds of `now` (Unix seconds)."""
    if len(header) > MAX_HEADER_LEN or not all(" " <= c <= "~" for c in header):
        raise Rejected("malformed")
    t, signatures = None, []
    for element in header.split(","):
        key, eq, value = element.partition("=")
        if not eq or not key or not set(key) <= KEY_CHARS:
            raise Rejected("malformed")
        if key == "t":
            if t is not None or not 1 <= len(value) <= 12 or not set(value) <= DIGITS:
                raise Rejected("malformed")
            t = int(value)
        elif key == "v1":
            if len(value) != 64 or not set(value) <= LOWER_HEX:
                raise Rejected("malformed")
            signatures.append(value)
        # other keys (a later v2) are skipped
    if t is None or not signatures or len(signatures) > MAX_SIGNATURES:
        raise Rejected("malformed")
    keys = secret_lines(secrets)
    if not keys:
        raise Rejected("no_secret")
    signed = str(t).encode("ascii") + b"." + body
    matched = False
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
        for signature in signatures:
            matched |= hmac.compare_digest(expected, signature)
    if not matched:
        raise Rejected("signature")
    if abs(now - t) > window:
        raise Rejected("window")


class ReplayGuard:
    """Event ids accepted in the last 2 x window: a copy of a delivery cannot verify longer."""

    def __init__(self, window=WINDOW, capacity=100_000):
        self.keep, self.capacity, self.seen = 2 * window, capacity, {}

    def check(self, event_id, now):
        """True for a new id (remembered from now on), False for one already received."""
        # Oldest first (insertion order), so forgetting stops at the first live id.
        while self.seen:
            oldest = next(iter(self.seen))
            if self.seen[oldest] >= now:
                break
            del self.seen[oldest]
        if event_id in self.seen:
            return False
        if len(self.seen) >= self.capacity:
            raise Rejected("busy")  # answer 503: the sender retries later
        self.seen[event_id] = now + self.keep
        return True


def handle(secrets, guard, header, body, now):
    """One delivery: (status, outcome). Process only on "accepted", and answer fast."""
    try:
        verify(secrets, header or "", body, now)
        event = json.loads(body)
        if not guard.check(event["id"], now):
            return 204, "duplicate"  # already received: 2xx so it is not sent again
    except Rejected as e:
        return (503 if e.args[0] == "busy" else 401), e.args[0]
    except (ValueError, KeyError, TypeError):
        return 400, "body"
    return 204, "accepted"


def check_mode():
    guard = ReplayGuard()
    for line in sys.stdin:
        if line.strip():
            d = json.loads(line)
            status, outcome = handle(
                d["secrets"], guard, d["header"], d["body"].encode("utf-8"), d["now"])
            print(status, outcome, flush=True)


def serve(port, secret_file):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    with open(secret_file, encoding="utf-8") as f:
        secrets = f.read()
    guard = ReplayGuard()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, outcome = handle(
                secrets, guard, self.headers.get("Portcullis-Signature"), body,
                int(time.time()))
            if outcome == "accepted":
                print(body.decode("utf-8"), flush=True)  # hand it to a queue here
            self.send_response(status)
            self.end_headers()

    HTTPServer(("127.0.0.1", port), Receiver).serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        check_mode()
    elif sys.argv[1:2] == ["--serve"] and len(sys.argv) == 4:
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(__doc__)
