import socket, ssl, sys, time
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)

def connect():
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")

def closed(s, wait):
    # True once the proxy has closed the connection (EOF or reset).
    s.settimeout(wait)
    try:
        return s.recv(65536) == b""
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    finally:
        s.settimeout(None)

def request(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += s.recv(65536)
    return head.split(b"\r\n")[0].decode()

def until_closed(s, feed=None, limit=10.0):
    start = time.time()
    while time.time() - start < limit:
        if feed:
            try:
                feed(s)
            except (ConnectionError, ssl.SSLError):
                return time.time() - start
        if closed(s, 0.3):
            return time.time() - start
    return None

# A head trickled in one header line at a time.
s = connect()
s.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n")
print("trickle", until_closed(s, feed=lambda s: s.sendall(b"X-Slow: 1\r\n")))
# Half a head, then nothing.
s = connect()
s.sendall(b"GET /stalled HTTP/1.1\r\nHost: local")
print("stalled", until_closed(s))
# One request, then idle.
s = connect()
print("status", request(s, "/once"))
print("idle", until_closed(s))
# A request every second for five seconds: longer than the idle timeout in all.
s = connect()
print("slow-client", [request(s, f"/tick/{i}") for i in range(5) if time.sleep(1) is None])
