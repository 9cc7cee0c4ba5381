import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(s, server_hostname="localhost")
def wait(c):
    t, data = time.time(), b""
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            data += d
    except OSError:
        pass
    status = data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1") else "closed"
    return "%s %.1f" % (status, time.time() - t)
head = conn()
head.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
body = conn()
body.sendall(b"POST /v1/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"token\":")
print(wait(head), flush=True)
print(wait(body), flush=True)
