import socket, ssl, sys, time
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
s.sendall(b"hello\n")
start = time.monotonic()
print("sent", flush=True)
s.settimeout(20)
try:
    while s.recv(4096):
        pass
except (socket.timeout, ConnectionError, ssl.SSLError):
    pass
print(f"{time.monotonic() - start}", flush=True)
