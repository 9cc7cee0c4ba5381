"""A real gRPC stack (grpcio) on both sides of a TCP-mode ambos proxy.

  proxy_grpc.py server             plaintext gRPC server on 127.0.0.1:0; prints its port
  proxy_grpc.py client PORT CA CERT KEY
                                   mTLS channel to localhost:PORT; a unary and a
                                   server-streaming call; prints one JSON line
No protoc: methods are generic handlers over raw bytes.
"""
import json
import sys
import time
from concurrent import futures

import grpc


def server():
    def get(request, context):
        return b"echo:" + request

    def stream(request, context):
        for i in range(3):
            yield b"%d:%s" % (i, request)

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Get": grpc.unary_unary_rpc_method_handler(get),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print(port, flush=True)
    while True:
        time.sleep(3600)


def client(port, ca, cert, key):
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    out = {}
    with grpc.secure_channel(f"localhost:{port}", creds) as ch:
        try:
            get = ch.unary_unary("/echo.Echo/Get")
            out["get"] = get(b"ping", timeout=10).decode()
            stream = ch.unary_stream("/echo.Echo/Stream")
            out["stream"] = [m.decode() for m in stream(b"x", timeout=10)]
        except grpc.RpcError as e:
            out["error"] = f"{e.code().name}: {e.details()}"
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    else:
        client(*sys.argv[2:6])
