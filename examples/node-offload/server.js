// A node.js app behind the front door's offload: /static/* is served by sitecar from ./public
// (ETag, Range, 304, precompressed files) without reaching node; node answers the API.
const http = require("http");

let calls = 0;
http
  .createServer((req, res) => {
    if (req.url === "/robots933456.txt") {
      res.writeHead(200).end();
      return;
    }
    if (req.url === "/api/hello") {
      calls += 1;
      res.writeHead(200, { "content-type": "application/json", "x-served-by": "node" });
      res.end(JSON.stringify({ hello: "from node", calls, static_requests_seen_by_node: staticSeen }));
      return;
    }
    if (req.url.startsWith("/static/")) staticSeen += 1;
    res.writeHead(404, { "content-type": "text/plain", "x-served-by": "node" }).end("not found\n");
  })
  .listen(Number(process.env.PORT || 3000), "0.0.0.0");
let staticSeen = 0;
