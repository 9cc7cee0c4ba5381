import socket, ssl, sys, time
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
start = time.monotonic()
s.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nx")
print("sent", flush=True)
s.settimeout(0.3)
data, answered = b"", None
while time.monotonic() - start < 20:
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        try:
            s.sendall(b"x")
        except (ConnectionError, ssl.SSLError):
            break
        continue
    except (ConnectionError, ssl.SSLError):
        break
    if not chunk:
        break
    if answered is None:
        answered = time.monotonic() - start
    data += chunk
closed = time.monotonic() - start
status = data.split(b"\r\n")[0].decode() if data else "closed"
print(f"{answered} {closed} {status}", flush=True)
