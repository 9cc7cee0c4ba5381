import socket, ssl, sys
port, ca, cert, key, mode = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
if mode in ("h1", "h2"):
    ctx.set_alpn_protocols(["http/1.1" if mode == "h1" else "h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname="localhost")
if mode == "h1":
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    got = s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
elif mode == "h2":
    assert s.selected_alpn_protocol() == "h2"
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    got = s.recv(65536)
    assert got[3:4] == b"\x04", got[:20]  # the server's SETTINGS
else:
    s.sendall(b"ping\n")
    assert s.recv(100) == b"ping\n"
print("ready", flush=True)
s.settimeout(20)
try:
    while s.recv(65536):
        pass
except (OSError, ssl.SSLError):
    pass
print("closed", flush=True)
