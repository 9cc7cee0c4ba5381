import json, sys
from wsgiref.simple_server import make_server, WSGIRequestHandler

port, log = int(sys.argv[1]), sys.argv[2]

def app(environ, start_response):
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    seen["CONTENT_LENGTH"] = environ.get("CONTENT_LENGTH", "")
    seen["PATH_INFO"] = environ.get("PATH_INFO", "")
    if seen["CONTENT_LENGTH"]:
        seen["BODY"] = environ["wsgi.input"].read(int(seen["CONTENT_LENGTH"])).decode("latin-1")
    body = json.dumps(seen).encode()
    with open(log, "a") as f:
        f.write(body.decode() + "\n")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

make_server("127.0.0.1", port, app, handler_class=Quiet).serve_forever()
