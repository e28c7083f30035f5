#!/usr/bin/python3
# test/e2e/alerts_receivers.py — local alert receivers for alerts_delivery.sh,
# on loopback: one HTTP server (a generic webhook that checks the Standard
# Webhooks signature, a Slack-shaped and a Discord-shaped webhook, and a
# webhook that fails its first request) and an SMTP sink (aiosmtpd).  Each
# received alert is appended to OUT/<receiver>.jsonl; the ports are written
# to OUT/ports when both servers listen.
#
# Usage: alerts_receivers.py OUT WEBHOOK_SECRET
import base64
import email
import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

OUT, SECRET = sys.argv[1], sys.argv[2]
KEY = base64.b64decode(SECRET[len("whsec_"):])
lock = threading.Lock()
flaky_seen = set()


def record(name, entry):
    with lock, open(os.path.join(OUT, name + ".jsonl"), "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


class Hooks(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            doc = json.loads(body)
        except ValueError:
            return self.reply(400)
        if self.headers.get("Content-Type") != "application/json":
            return self.reply(415)
        if self.path in ("/hook", "/flaky"):
            wid = self.headers.get("webhook-id", "")
            ts = self.headers.get("webhook-timestamp", "")
            want = base64.b64encode(hmac.new(KEY, f"{wid}.{ts}.".encode() + body,
                                             hashlib.sha256).digest()).decode()
            sigs = [s.split(",", 1)[1] for s in self.headers.get("webhook-signature", "").split()
                    if s.startswith("v1,")]
            fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
            ok = fresh and any(hmac.compare_digest(s, want) for s in sigs)
            if self.path == "/flaky" and wid not in flaky_seen:
                flaky_seen.add(wid)
                record("flaky_refused", {"id": wid})
                return self.reply(503, b"try later")
            record(self.path[1:], {"id": wid, "signature_ok": ok, "type": doc.get("type"),
                                   "level": doc["data"]["level"], "alert_id": doc["data"]["alert_id"],
                                   "period_start": doc["data"]["period_start"]})
            return self.reply(200 if ok else 401)
        if self.path == "/slack":
            record("slack", {"text": doc["text"]})
            return self.reply(200, b"ok")
        if self.path == "/discord":
            record("discord", {"content": doc["content"]})
            return self.reply(204)
        return self.reply(404)


class Sink:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content)
        record("email", {"from": envelope.mail_from, "to": ",".join(envelope.rcpt_tos),
                         "subject": msg["Subject"], "alert_id": msg["X-Alert-Id"],
                         "body": msg.get_payload()})
        return "250 OK"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


http = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
smtp_port = free_port()
smtp = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
smtp.start()
with open(os.path.join(OUT, "ports.tmp"), "w") as f:
    f.write(f"{http.server_address[1]} {smtp_port}\n")
os.rename(os.path.join(OUT, "ports.tmp"), os.path.join(OUT, "ports"))
try:
    http.serve_forever()
finally:
    smtp.stop()
