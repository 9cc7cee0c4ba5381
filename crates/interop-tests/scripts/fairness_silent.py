import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    if len(sys.argv) > 3 and i == n // 2:
        time.sleep(1.2)
    s = socket.socket()
    s.connect(("127.0.0.1", port))
    socks.append(s)
print("open", flush=True)
time.sleep(600)
