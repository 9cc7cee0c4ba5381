# A TLS upstream for TCP mode: PORT CA CERT KEY. Requires a client
# certificate chaining to CA; accepts a PROXY protocol v2 header before the
# TLS handshake (as HAProxy `send-proxy-v2 ssl` sends it); answers one line
# with "CN=<client CN> alpn=<chosen or -> src=<PROXY source or -> <line>"
# and closes. Logs each connection's outcome to stderr.
import socket, ssl, struct, sys, threading

port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.set_alpn_protocols(["echo/1"])
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(conn):
    head = conn.recv(16, socket.MSG_PEEK | socket.MSG_WAITALL)
    if not head.startswith(SIG):
        return "-"
    head = conn.recv(16, socket.MSG_WAITALL)
    rest = conn.recv(struct.unpack("!H", head[14:16])[0], socket.MSG_WAITALL)
    if head[13] >> 4 == 1:  # AF_INET
        return socket.inet_ntoa(rest[0:4])
    return socket.inet_ntop(socket.AF_INET6, rest[0:16])


def serve(conn):
    try:
        conn.settimeout(10)
        src = proxy_v2(conn)
        s = ctx.wrap_socket(conn, server_side=True)
        cn = dict(x[0] for x in s.getpeercert()["subject"]).get("commonName")
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            line += chunk
        s.sendall(f"CN={cn} alpn={s.selected_alpn_protocol() or '-'} src={src} ".encode() + line)
        s.close()
        print(f"served CN={cn}", file=sys.stderr, flush=True)
    except Exception as e:
        print(f"refused: {e}", file=sys.stderr, flush=True)
        conn.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(16)
while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
