"""The main app: answers questions about text by calling the embedding sidecar on localhost.

GET /embed?text=...          -> {"text", "dimension", "embedding"}
GET /similarity?a=...&b=...  -> {"a", "b", "cosine"}
"""
import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SIDECAR = "http://127.0.0.1:%s/embed" % os.environ.get("EMBEDDER_PORT", "8001")


def embed(texts):
    req = urllib.request.Request(SIDECAR, data=json.dumps({"texts": texts}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/embed" and "text" in q:
            e = embed([q["text"]])
            return self.reply(200, {"text": q["text"], "dimension": e["dimension"], "embedding": e["embeddings"][0]})
        if u.path == "/similarity" and "a" in q and "b" in q:
            a, b = embed([q["a"], q["b"]])["embeddings"]
            return self.reply(200, {"a": q["a"], "b": q["b"], "cosine": sum(x * y for x, y in zip(a, b))})
        self.reply(200, {"try": ["/embed?text=hello", "/similarity?a=cat&b=kitten"]})

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)


ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
