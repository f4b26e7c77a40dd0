"""A test container: an HTTP server that records its life in $EVENTS.

usage: app.py NAME PORT [ignore-term] [delay=SECONDS] [child] [orphan] [daemon]
  ignore-term   survive SIGTERM (only SIGKILL ends it)
  delay=S       wait S seconds before listening
  child         start `sleep 1000` in the same process group
  orphan        leave a short-lived orphan behind (it becomes a zombie of whoever adopts it)
  daemon        start a `sleep 1000` in a new session (escapes the process group)
GET /env answers the environment as JSON; GET /robots933456.txt answers 404; GET /cached answers
"cached from NAME #n" with Cache-Control: max-age=60 (n counts its requests); GET /slow... answers
after one second; GET /freeze makes it hang on every request from then on (it accepts, never
answers); anything else 200.
"""
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name, port, opts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
events = os.environ.get("EVENTS", "/dev/null")


def ev(what, extra=""):
    with open(events, "a") as f:
        f.write(f"{time.time():.6f} {what} {name} {os.getpid()} {extra}\n")


def on_term(sig, frame):
    ev("term")
    if "ignore-term" not in opts:
        os._exit(0)


signal.signal(signal.SIGTERM, on_term)
ev("start")
for o in opts:
    if o.startswith("delay="):
        time.sleep(float(o.split("=", 1)[1]))
if "child" in opts:
    ev("child", subprocess.Popen(["sleep", "1000"]).pid)
if "daemon" in opts:
    ev("daemon", subprocess.Popen(["sleep", "1000"], start_new_session=True).pid)
if "orphan" in opts:
    # The intermediate shell exits at once; its `sleep 0.2` is adopted and exits: a zombie to reap.
    subprocess.run(["sh", "-c", "sleep 0.2 & echo $! > /dev/null"])


cached = 0
frozen = False


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        global cached, frozen
        extra = []
        if frozen:
            time.sleep(3600)
        if self.path == "/freeze":
            frozen = True
            time.sleep(3600)
        if self.path == "/env":
            body, code = json.dumps(dict(os.environ)).encode(), 200
        elif self.path.split("?")[0] == "/headers":
            body, code = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode(), 200
        elif self.path.startswith("/slow"):
            time.sleep(1.0)
            body, code = f"slow from {name}".encode(), 200
        elif self.path == "/cached":
            cached += 1
            body, code = f"cached from {name} #{cached}".encode(), 200
            extra = [("Cache-Control", "max-age=60")]
        elif self.path == "/robots933456.txt":
            body, code = b"not found", 404
        else:
            body, code = f"hello from {name}".encode(), 200
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.command} {self.path}", flush=True)


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
ev("listening")
print(f"hello from {name} on {port}", flush=True)
print(f"to stderr from {name}", file=sys.stderr, flush=True)
server.serve_forever()
