import json, socket, ssl, sys
port, ca, cert, key, variants = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])
out = []
for method, target in json.load(open(variants)):
    # Authority form: Host names the same authority.
    host = target if not target.startswith("/") and "://" not in target and target != "*" else "localhost"
    req = (method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n").encode("latin-1")
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(req)
                data = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except (ssl.SSLError, ConnectionResetError):
                        break
                    if not chunk:
                        break
                    data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].split(b" ")
        status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
        out.append([status, body.decode("latin-1")])
    except Exception as e:
        out.append([0, "error: %s" % e])
print(json.dumps(out))
