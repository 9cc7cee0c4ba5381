import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
pending, held, closed, slowest = [], [], 0, 0.0
for i in range(n):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        closed += 1
        continue
    # Timed from the connect's end. A connection that found the accept
    # queue full is accepted only when the kernel retransmits its SYN-ACK,
    # 1 s later: the burst is paced a little to spare the queue.
    if i % 20 == 19:
        time.sleep(0.005)
    s.setblocking(False)
    pending.append((s, time.monotonic()))
deadline = time.monotonic() + 2
while pending and time.monotonic() < deadline:
    rest = []
    for s, start in pending:
        try:
            if s.recv(1):
                held.append(s)
                continue
        except BlockingIOError:
            rest.append((s, start))
            continue
        except OSError:
            pass
        closed += 1
        slowest = max(slowest, time.monotonic() - start)
        s.close()
    pending = rest
    time.sleep(0.005)
print(f"{closed} {slowest:.3f}", flush=True)
time.sleep(600)
