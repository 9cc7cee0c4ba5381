"""A JWKS server over HTTPS for the proxy's pulled-JWKS test.
Usage: PORT DIR CERT KEY. Serves DIR/served.json at any path with an ETag
(a hash of the content; 304 to a matching If-None-Match), reading the file
on every request so the test can swap it; after each request writes
DIR/jwks_stats.json: {"requests", "conditional", "not_modified"}."""
import hashlib, http.server, json, os, ssl, sys

port, d, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
stats = {"requests": 0, "conditional": 0, "not_modified": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(f"{d}/served.json", "rb").read()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        asked = self.headers.get("If-None-Match")
        stats["requests"] += 1
        if asked is not None:
            stats["conditional"] += 1
        if asked == etag:
            stats["not_modified"] += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/jwk-set+json")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        open(f"{d}/jwks_stats.tmp", "w").write(json.dumps(stats))
        os.replace(f"{d}/jwks_stats.tmp", f"{d}/jwks_stats.json")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
