import os, posixpath, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
mode, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)
    def serve(self):
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        if "://" in raw:
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        if mode == "servlet":
            raw = "/".join(seg.split(";", 1)[0] for seg in raw.split("/"))
            p = urllib.parse.unquote(urllib.parse.unquote(raw)).replace("\\", "/")
            p = "/".join(seg.strip(" \t\r\n\x00\x0b\x0c\xa0") for seg in p.split("/"))
        else:
            p = urllib.parse.unquote(raw).replace("\\", "/").lower()
        p = posixpath.normpath("/" + p)
        full = os.path.join(root, *[s for s in p.split("/") if s not in ("", ".", "..")])
        if os.path.isfile(full):
            body = open(full, "rb").read()
            self.send_response(200)
        else:
            body = b"not found\n"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
