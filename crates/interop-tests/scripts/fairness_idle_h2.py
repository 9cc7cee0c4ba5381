import socket, ssl, struct, sys, time
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
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
