import json, socket, ssl, sys, time
port, ca, cert, key, pause = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
def get(session):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost", session=session)
    data = b""
    try:
        s.sendall(b"GET /resume HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while chunk := s.recv(65536):
            data += chunk
    except (ConnectionError, ssl.SSLError):
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0].decode() or "closed"
    out = {"status": status, "reused": s.session_reused, "body": body.decode() or "null"}
    session = s.session
    s.close()
    return out, session
first, session = get(None)
time.sleep(pause)
second, _ = get(session)
print(json.dumps([first, second]))
