import socket, ssl, sys
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
conns, failed = [], 0
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        conns.append(ctx.wrap_socket(s, server_hostname="localhost"))
    except Exception:
        failed += 1
print(len(conns), failed, flush=True)
for _ in sys.stdin:
    alive = 0
    for c in conns:
        c.settimeout(0.01)
        try:
            alive += c.recv(1) != b""
        except (socket.timeout, ssl.SSLWantReadError):
            alive += 1
        except OSError:
            pass
    print(alive, flush=True)
