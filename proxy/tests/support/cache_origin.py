"""A scriptable origin for the cache tests. usage: cache_origin.py PORT

Any GET/HEAD path answers "<path> #<n>" where n counts the requests that reached this origin for
that path and query; query parameters choose the response:
  cc=...        Cache-Control          cdn=...    CDN-Cache-Control
  etag=...      ETag (quoted as given) lm=1       Last-Modified (a fixed date)
  vary=...      Vary                   cookie=1   Set-Cookie
  status=N      status code            delay=S    answer after S seconds
  x=...         X-Version header       type=...   Content-Type
  size=N        body of N bytes instead  age=N     Age (seconds spent in caches upstream)
  expires=...   Expires (as given)       bare304=1  a 304 without ETag or Last-Modified
  etagn=1       ETag "v<n>", new each time nocond=1  never 304, whatever the request asks
  pattern=1     the size=N body is "0123456789" repeated
  ranges=1      a single-range Range (bytes=a-b, a-, -n) gets a 206 of the body
  nolen=1       a 200 without Content-Length (the body ends with the connection)
  hints=1       a 103 Early Hints (Link: </hint.css>; rel=preload) before the answer
Every answer carries X-Count: n.
A request whose If-None-Match holds the response's ETag, or whose If-Modified-Since is set while
lm=1, gets 304 (with the X-Version and Cache-Control of this request). The headers main saw are
recorded: GET /_seen?p=PATH answers the last request head for PATH as JSON.
POST/PUT/DELETE answer 200 "done" (status=N to choose; loc=... for Location; cloc=... Content-Location,
cloc=self for the request's own target; cc=... Cache-Control).
POST /_fail?on=1 makes every other answer a 503 until /_fail?on=0.
POST /_drop?how=close (or reset) makes every other request end with the connection closed (or
reset) before any answer, until /_drop?how=0.
GET /_count?p=PATH answers how many requests reached the origin for PATH (path and query).
"""
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

counts = {}
seen = {}
fail = False
drop = "0"
lock = threading.Lock()
LM = "Sun, 01 Nov 2026 00:00:00 GMT"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, headers, body, length=True):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if not length:
            self.close_connection = True
            self.send_header("Connection", "close")
        elif code not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)

    def handle_one(self):
        global fail, drop
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        if u.path == "/_fail":
            fail = q.get("on") == "1"
            return self.answer(200, [], b"ok")
        if u.path == "/_drop":
            drop = q.get("how", "0")
            return self.answer(200, [], b"ok")
        if u.path == "/_count":
            with lock:
                n = counts.get(q.get("p", ""), 0)
            return self.answer(200, [("Content-Type", "text/plain")], str(n).encode())
        if u.path == "/_seen":
            with lock:
                h = seen.get(q.get("p", ""), [])
            return self.answer(200, [("Content-Type", "application/json")], json.dumps(h).encode())
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
            n = counts[self.path]
            seen[self.path] = [[k.lower(), v] for k, v in self.headers.items()]
        if "delay" in q:
            time.sleep(float(q["delay"]))
        if drop in ("close", "reset"):
            if drop == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if fail:
            return self.answer(503, [("Content-Type", "text/plain")], b"origin failing")
        if self.command in ("POST", "PUT", "DELETE", "PATCH"):
            length = int(self.headers.get("Content-Length", "0"))
            if length:
                self.rfile.read(length)
            h = []
            if "loc" in q:
                h.append(("Location", q["loc"]))
            if "cloc" in q:
                h.append(("Content-Location", self.path if q["cloc"] == "self" else q["cloc"]))
            if "cc" in q:
                h.append(("Cache-Control", q["cc"]))
            return self.answer(int(q.get("status", "200")), h, b"done")
        h = [("Content-Type", q.get("type", "text/plain")), ("X-Count", str(n))]
        for key, name in (("cc", "Cache-Control"), ("cdn", "CDN-Cache-Control"), ("vary", "Vary"), ("x", "X-Version"), ("age", "Age"), ("expires", "Expires")):
            if key in q:
                h.append((name, q[key]))
        if "etag" in q:
            h.append(("ETag", '"%s"' % q["etag"]))
        if q.get("etagn") == "1":
            h.append(("ETag", '"v%d"' % n))
        if q.get("lm") == "1":
            h.append(("Last-Modified", LM))
        if q.get("cookie") == "1":
            h.append(("Set-Cookie", "session=secret"))
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        if q.get("nocond") == "1":
            inm = ims = None
        if ("etag" in q and inm and ('"%s"' % q["etag"]) in inm) or (inm is None and q.get("lm") == "1" and ims):
            drop = ("Content-Type", "ETag", "Last-Modified") if q.get("bare304") == "1" else ("Content-Type",)
            return self.answer(304, [x for x in h if x[0] not in drop], b"")
        if q.get("hints") == "1":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </hint.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
        if "size" in q and q.get("pattern") == "1":
            body = (b"0123456789" * (int(q["size"]) // 10 + 1))[: int(q["size"])]
        elif "size" in q:
            body = b"y" * int(q["size"])
        else:
            body = ("%s #%d" % (self.path, n)).encode()
            if "vary" in q:
                body += (" lang=%s" % self.headers.get("Accept-Language", "-")).encode()
        rng = self.headers.get("Range", "")
        if q.get("ranges") == "1" and rng.startswith("bytes=") and "," not in rng:
            a, _, b = rng[6:].partition("-")
            total = len(body)
            first, last = (total - int(b), total - 1) if a == "" else (int(a), min(int(b), total - 1) if b else total - 1)
            h.append(("Content-Range", "bytes %d-%d/%d" % (first, last, total)))
            return self.answer(206, h, body[first : last + 1])
        return self.answer(int(q.get("status", "200")), h, body, length=q.get("nolen") != "1")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = handle_one


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 256
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
