"""A Python web app whose visit counter lives in the Redis sidecar on localhost.

It speaks Redis' protocol (RESP) over a socket: INCR on every page view.
PORT and REDIS_PORT come from the environment, as App Service hands them to the container.
"""
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def incr(key):
    with socket.create_connection(("127.0.0.1", int(os.environ.get("REDIS_PORT", "6379"))), timeout=2) as s:
        s.sendall(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key))
        reply = s.makefile("rb").readline()
        if not reply.startswith(b":"):
            raise RuntimeError(reply.decode(errors="replace"))
        return int(reply[1:])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/robots933456.txt":
            body, code = b"", 200
        else:
            try:
                body, code = ("visits: %d\n" % incr(b"visits")).encode(), 200
            except OSError as e:
                body, code = ("redis unavailable: %s\n" % e).encode(), 503
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)


ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
