"""A test origin for the front door. usage: origin.py PORT

GET  /headers           the request head as JSON {"method", "path", "version", "headers": [[k, v]...],
                        "peer": the port the request came from}
GET  /slow?s=SECONDS    answers after a delay
POST /upload            reads the body, answers its length
GET  /download?n=BYTES  streams n bytes (chunked)
GET  /garbage           answers with bytes that are not HTTP
GET  /close             closes the connection without answering
GET  /ws                WebSocket handshake, then echoes raw bytes (closes on the bytes CLOSE)
GET  /count             how many requests reached this origin
GET  /paths             every request line's method and path that reached it, as JSON
GET  /http10            answers as an HTTP/1.0 server
"""
import base64
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

count = 0
paths = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_one(self):
        global count
        with lock:
            count += 1
            paths.append("%s %s" % (self.command, self.path))
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path == "/slow":
            time.sleep(float(q.get("s", ["1"])[0]))
            return self.send(200, b"slow done", "text/plain")
        if u.path == "/upload":
            n = 0
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    left = size
                    while left:
                        chunk = self.rfile.read(min(left, 1 << 16))
                        left -= len(chunk)
                        n += len(chunk)
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length", "0"))
                while left:
                    chunk = self.rfile.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    left -= len(chunk)
                    n += len(chunk)
            return self.send(200, str(n).encode(), "text/plain")
        if u.path == "/download":
            n = int(q.get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"x" * 65536
            while n > 0:
                part = block[: min(n, len(block))]
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                n -= len(part)
            self.wfile.write(b"0\r\n\r\n")
            return
        if u.path == "/garbage":
            self.wfile.write(b"this is not http\r\n\r\n")
            self.close_connection = True
            return
        if u.path == "/close":
            self.close_connection = True
            return
        if u.path == "/ws":
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(65536)
                if not data or b"CLOSE" in data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        if u.path == "/http10":
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.close_connection = True
            return
        if u.path not in ("/upload", "/ws") and self.command in ("POST", "PUT", "DELETE"):
            # A conforming server reads a body it does not use, so the connection stays framed.
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    self.rfile.read(size + 2) if size else self.rfile.readline()
                    if size == 0:
                        break
            else:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if u.path == "/paths":
            with lock:
                return self.send(200, json.dumps(paths).encode())
        if u.path == "/count":
            return self.send(200, str(count).encode(), "text/plain")
        body = json.dumps({"method": self.command, "path": self.path, "version": self.request_version, "headers": list(self.headers.items()), "peer": self.client_address[1]}).encode()
        self.send(200, body)

    do_GET = do_POST = do_PUT = do_DELETE = handle_one


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
