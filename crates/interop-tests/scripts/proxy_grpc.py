"""A real gRPC stack (grpcio) on both sides of an ambos proxy.

  proxy_grpc.py server [EVENTS [CERT KEY]]
                        gRPC server on 127.0.0.1:0 (TLS with CERT and KEY,
                        else plaintext h2c); prints its port; appends what it
                        observes (deadlines, cancellations) to EVENTS
  proxy_grpc.py client PORT CA CERT KEY [CALL...]
                        mTLS channel to localhost:PORT; runs each CALL
                        (default: get stream); prints one JSON line with each
                        call's result, or "CODE: details" when it failed;
                        "cancel" waits for the server's note in $GRPC_EVENTS
No protoc: methods are generic handlers over raw bytes.
"""
import hashlib
import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc

BIG = 16 * 1024 * 1024
OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def server(events=None, cert=None, key=None):
    lock = threading.Lock()

    def note(line):
        if events:
            with lock, open(events, "a") as f:
                f.write(line + "\n")

    def get(request, context):
        if request.startswith(b"fail:"):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused: " + request[5:].decode())
        return b"echo:" + request

    def set_(request, context):
        return b"set:" + request

    def big(request, context):
        # The message back is the one that came, so both directions carry 16 MB.
        return request

    def stream(request, context):
        if request == b"endless":
            # One message every 50 ms until the call ends: only a cancel
            # stops it (grpcio then stops pulling from this generator).
            context.add_callback(lambda: note("cancelled Stream"))
            i = 0
            while context.is_active():
                yield b"%d" % i
                i += 1
                time.sleep(0.05)
            return
        for i in range(3):
            yield b"%d:%s" % (i, request)

    def collect(requests, context):
        return b"+".join(requests)

    def chat(requests, context):
        for r in requests:
            yield b"re:" + r

    def sleep(request, context):
        left = context.time_remaining()
        note("Sleep deadline %s" % ("none" if left is None else "%.1f" % left))
        end = time.time() + 10
        while context.is_active() and time.time() < end:
            time.sleep(0.02)
        note("Sleep ended, active=%s" % context.is_active())
        return b"slept"

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo",
        {
            "Get": grpc.unary_unary_rpc_method_handler(get),
            "Set": grpc.unary_unary_rpc_method_handler(set_),
            "Big": grpc.unary_unary_rpc_method_handler(big),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Collect": grpc.stream_unary_rpc_method_handler(collect),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    srv.add_generic_rpc_handlers((handler,))
    if cert:
        creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
        port = srv.add_secure_port("127.0.0.1:0", creds)
    else:
        port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    print(port, flush=True)
    while True:
        time.sleep(3600)


def run_call(ch, name):
    if name == "get":
        return ch.unary_unary("/echo.Echo/Get")(b"ping", timeout=10).decode()
    if name == "set":
        return ch.unary_unary("/echo.Echo/Set")(b"x", timeout=10).decode()
    if name == "fail":
        return ch.unary_unary("/echo.Echo/Get")(b"fail:no such account", timeout=10).decode()
    if name == "stream":
        return [m.decode() for m in ch.unary_stream("/echo.Echo/Stream")(b"x", timeout=10)]
    if name == "collect":
        return ch.stream_unary("/echo.Echo/Collect")(iter([b"a", b"b", b"c"]), timeout=10).decode()
    if name == "chat":
        return [m.decode() for m in ch.stream_stream("/echo.Echo/Chat")(iter([b"1", b"2", b"3"]), timeout=10)]
    if name == "big":
        data = bytes(range(256)) * (BIG // 256)
        back = ch.unary_unary("/echo.Echo/Big")(data, timeout=10)
        return {"len": len(back), "same": hashlib.sha256(back).digest() == hashlib.sha256(data).digest()}
    if name == "huge":
        return len(ch.unary_unary("/echo.Echo/Big")(b"x" * (20 * 1024 * 1024), timeout=10))
    if name == "deadline":
        return ch.unary_unary("/echo.Echo/Sleep")(b"", timeout=1.5).decode()
    if name == "cancel":
        call = ch.unary_stream("/echo.Echo/Stream")(b"endless", timeout=10)
        first = next(call).decode()
        call.cancel()
        # The channel stays open: only the proxy passing the reset on ends the server's handler.
        events, end = os.environ.get("GRPC_EVENTS", ""), time.time() + 5
        while time.time() < end:
            if os.path.exists(events) and "cancelled Stream" in open(events).read():
                return "cancelled after %s; the upstream saw it" % first
            time.sleep(0.05)
        return "cancelled after %s; the upstream did not see it within 5 s" % first
    raise ValueError(name)


def client(port, ca, cert, key, *calls):
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    out = {}
    with grpc.secure_channel(f"localhost:{port}", creds, options=OPTIONS) as ch:
        if not calls:
            # The TCP-mode test's form: the first failure is "error".
            try:
                out["get"] = run_call(ch, "get")
                out["stream"] = run_call(ch, "stream")
            except grpc.RpcError as e:
                out["error"] = f"{e.code().name}: {e.details()}"
        for name in calls:
            try:
                out[name] = run_call(ch, name)
            except grpc.RpcError as e:
                out[name] = f"{e.code().name}: {e.details()}"
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(*sys.argv[2:5])
    else:
        client(*sys.argv[2:])
