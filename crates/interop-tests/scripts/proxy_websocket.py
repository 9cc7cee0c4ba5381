"""WebSocket peers for the proxy tests (the `websockets` library).
server: an echo server on 127.0.0.1 (plain), prints its port; a text
  message "headers" is answered with the handshake's request headers as
  JSON, "close:CODE" closes with that code, anything else is echoed.
client PORT CA CERT KEY PATH STEP...: connects to wss://localhost:PORT/PATH
  with the client certificate and runs the steps: "text:X" and "bin:HEX"
  send and expect the echo, "headers" asks for the upstream's view,
  "close:CODE" asks the server to close, "idle:SECONDS" waits for the
  connection to be closed by the proxy. Prints one JSON object: the
  results, or the refused handshake's HTTP status.
client-h2 PORT CA CERT KEY PATH STEP...: the same over HTTP/2 (RFC 8441
  extended CONNECT) with the `h2` library and WebSocket frames of its own
  (websockets speaks HTTP/1.1 only)."""
import asyncio, json, os, socket, ssl, struct, sys
import websockets


async def serve():
    async def handler(ws):
        async for msg in ws:
            if msg == "headers":
                await ws.send(json.dumps({k.lower(): v for k, v in ws.request.headers.raw_items()}))
            elif isinstance(msg, str) and msg.startswith("close:"):
                await ws.close(int(msg[6:]), "asked to")
            else:
                await ws.send(msg)

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


async def client(port, ca, cert, key, path, steps):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    out = {"results": []}
    try:
        async with websockets.connect(f"wss://localhost:{port}{path}", ssl=ctx, open_timeout=10) as ws:
            for step in steps:
                kind, _, arg = step.partition(":")
                if kind == "text":
                    await ws.send(arg)
                    out["results"].append(await ws.recv())
                elif kind == "bin":
                    await ws.send(bytes.fromhex(arg))
                    reply = await ws.recv()
                    out["results"].append(reply.hex() if isinstance(reply, bytes) else f"text {reply}")
                elif kind == "headers":
                    await ws.send("headers")
                    out["results"].append(json.loads(await ws.recv()))
                elif kind == "close":
                    await ws.send(step)
                    try:
                        await ws.recv()
                    except websockets.ConnectionClosed as e:
                        out["results"].append({"close": e.rcvd.code if e.rcvd else None})
                elif kind == "idle":
                    loop = asyncio.get_running_loop()
                    start = loop.time()
                    try:
                        await asyncio.wait_for(ws.recv(), float(arg))
                        out["results"].append({"idle": "message"})
                    except websockets.ConnectionClosed as e:
                        out["results"].append({"closed_after": round(loop.time() - start, 2),
                                               "close": e.rcvd.code if e.rcvd else None})
                    except asyncio.TimeoutError:
                        out["results"].append({"idle": "still open"})
    except websockets.InvalidStatus as e:
        out["status"] = e.response.status_code
    print(json.dumps(out), flush=True)


def ws_frame(opcode, payload):
    # A client frame: FIN, masked.
    mask, n = os.urandom(4), len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(buf):
    # A server frame (unmasked): (opcode, payload, rest) or None if incomplete.
    if len(buf) < 2:
        return None
    n, at = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack(">Q", buf[2:10])[0], 10
    if len(buf) < at + n:
        return None
    return buf[0] & 0x0F, buf[at:at + n], buf[at + n:]


def client_h2(port, ca, cert, key, path, steps):
    import h2.config, h2.connection, h2.events, h2.settings
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out, pending, buf, state = {"results": []}, [], b"", {"status": None, "ended": False, "settings": False}

    def pump():
        data = sock.recv(65536)
        if not data:
            state["ended"] = True
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                state["settings"] = True
            elif isinstance(ev, h2.events.ResponseReceived):
                state["status"] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                pending.append(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                state["ended"] = True
        sock.sendall(conn.data_to_send())

    while not state["settings"]:
        pump()
    conn.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                          (":path", path), (":authority", f"localhost:{port}"), ("sec-websocket-version", "13")])
    sock.sendall(conn.data_to_send())
    while state["status"] is None and not state["ended"]:
        pump()
    if state["status"] != 200:
        out["status"] = state["status"]
        print(json.dumps(out), flush=True)
        return

    def send(opcode, payload):
        conn.send_data(1, ws_frame(opcode, payload))
        sock.sendall(conn.data_to_send())

    def recv():
        nonlocal buf
        while True:
            frame = ws_parse(buf)
            if frame:
                buf = frame[2]
                return frame[0], frame[1]
            if pending:
                buf += pending.pop(0)
                continue
            if state["ended"]:
                return None
            pump()

    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "text":
            send(1, arg.encode())
            out["results"].append(recv()[1].decode())
        elif kind == "bin":
            send(2, bytes.fromhex(arg))
            out["results"].append(recv()[1].hex())
        elif kind == "headers":
            send(1, b"headers")
            out["results"].append(json.loads(recv()[1]))
        elif kind == "close":
            send(1, step.encode())
            frame = recv()
            out["results"].append({"close": struct.unpack(">H", frame[1][:2])[0] if frame and frame[0] == 8 else None})
    print(json.dumps(out), flush=True)


if sys.argv[1] == "server":
    asyncio.run(serve())
elif sys.argv[1] == "client-h2":
    client_h2(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:])
else:
    asyncio.run(client(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:]))
