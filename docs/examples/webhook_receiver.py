#!/usr/bin/env python3
"""A Portcullis webhook receiver, standard library only (docs/webhooks.md).

    python3 webhook_receiver.py --serve 8000 SECRET_FILE   # a small HTTP receiver
    python3 webhook_receiver.py --check                    # the test mode, below

--check reads JSON lines on stdin, each {"secrets", "header", "body", "now"} and optionally
"fail_hand_off": true, and prints one line per delivery: "<status> <outcome>", e.g.
"204 accepted", "204 duplicate", "401 signature", "503 hand_off". The replay guard lasts for
the whole run, as in a server. The crate portcullis-webhook runs it in its tests against its
own signatures.

The server is an example: put it behind TLS and a reverse proxy that limits connections.
"""

import hashlib
import hmac
import json
import sys
import time
import uuid

WINDOW = 300  # seconds either way between the receiver's clock and t
MAX_HEADER_LEN = 4096
MAX_SIGNATURES = 8
MAX_BODY = 64 * 1024  # real bodies are under 1 KiB; refuse more with 413 before verifying
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
            if (t is not None or not 1 <= len(value) <= 12 or not set(value) <= DIGITS
                    or (len(value) > 1 and value[0] == "0")):
                raise Rejected("malformed")  # digits only, no leading zero
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

    def forget(self, event_id):
        """Accept `event_id` again: its hand-off failed, so the sender's retry must be taken."""
        self.seen.pop(event_id, None)


def handle(secrets, guard, header, body, now, hand_off):
    """One delivery: (status, outcome). `hand_off(event)` queues or stores the event (any
    type, known or not) and must be fast; process it after answering."""
    try:
        verify(secrets, header or "", body, now)
        event = json.loads(body)
        event_id = str(uuid.UUID(event["id"]))  # only the id is needed to answer
        if not guard.check(event_id, now):
            return 204, "duplicate"  # already received: 2xx so it is not sent again
    except Rejected as e:
        return (503 if e.args[0] == "busy" else 401), e.args[0]
    except (ValueError, KeyError, TypeError, AttributeError):
        return 400, "body"
    try:
        hand_off(event)
    except Exception:
        # Recorded is not processed: forget the id so the retry is not taken for a duplicate.
        guard.forget(event_id)
        return 503, "hand_off"
    return 204, "accepted"


def check_mode():
    guard = ReplayGuard()
    for line in sys.stdin:
        if line.strip():
            d = json.loads(line)

            def hand_off(event, fail=d.get("fail_hand_off", False)):
                if fail:
                    raise OSError("queue down")

            status, outcome = handle(
                d["secrets"], guard, d["header"], d["body"].encode("utf-8"), d["now"],
                hand_off)
            print(status, outcome, flush=True)


def body_length(value):
    """The Content-Length as an int in 0..MAX_BODY, or None (411/413): never read unbounded."""
    if value is None or not value.isdigit() or len(value) > 12:
        return None
    length = int(value)
    return length if length <= MAX_BODY else None


def serve(port, secret_file):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    # newline="": split on \n only, as the sender does (a lone \r stays inside its line).
    with open(secret_file, encoding="utf-8", newline="") as f:
        secrets = f.read()
    guard, lock = ReplayGuard(), threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        timeout = 10  # seconds per socket read: a slow client cannot hold a thread forever

        def do_POST(self):
            length = body_length(self.headers.get("Content-Length"))
            if length is None:
                self.send_response(413)
                self.send_header("Connection", "close")
                self.end_headers()
                return
            body = self.rfile.read(length)
            with lock:
                status, outcome = handle(
                    secrets, guard, self.headers.get("Portcullis-Signature"), body,
                    int(time.time()), lambda event: print(json.dumps(event), flush=True))
            self.send_response(status)
            self.end_headers()

    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        check_mode()
    elif sys.argv[1:2] == ["--serve"] and len(sys.argv) == 4:
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(__doc__)
