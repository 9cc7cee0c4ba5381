"""WebSocket peers for the proxy tests (the `websockets` library).
server: an echo server on 127.0.0.1 (plain), prints its port; a text
  message "headers" is answered with the handshake's request headers as
  JSON, "close:CODE" closes with that code, anything else is echoed.
client PORT CA CERT KEY PATH STEP...: connects to wss://localhost:PORT/PATH
  with the client certificate and runs the steps: "text:X" and "bin:HEX"
  send and expect the echo, "headers" asks for the upstream's view,
  "close:CODE" asks the server to close, "idle:SECONDS" waits for the
  connection to be closed by the proxy. Prints one JSON object: the
  results, or the refused handshake's HTTP status."""
import asyncio, json, ssl, sys
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


if sys.argv[1] == "server":
    asyncio.run(serve())
else:
    asyncio.run(client(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:]))
