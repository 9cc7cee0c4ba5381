import http.client, json, ssl, sys, time, urllib.request
port, ca, cert, key, metrics = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def parked():
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith("ambos_proxy_parked_connections"):
            return float(line.split()[-1])
    return 0.0

def wait_parked(n):
    deadline = time.time() + 10
    while parked() != n:
        if time.time() > deadline:
            sys.exit(f"parked connections stayed at {parked()}, expected {n}")
        time.sleep(0.1)

ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
conn = http.client.HTTPSConnection("localhost", port, context=ctx)
conn.request("GET", "/first")
r = conn.getresponse()
print("first", r.status, json.loads(r.read())["path"])
sock = conn.sock
wait_parked(1)
body = b"x" * 100000
conn.request("POST", "/payments/after-park", body=body, headers={"Content-Type": "application/octet-stream"})
r = conn.getresponse()
view = json.loads(r.read())
print("second", r.status, view["path"], view["body_len"], "same-connection" if conn.sock is sock else "new-connection")
wait_parked(1)
print("parked again")
sys.stdout.flush()
if sys.argv[6] == "close":
    conn.close()
    wait_parked(0)
    print("closed")
else:
    sys.stdin.read(1)
    # The proxy closed the parked connection when it stopped.
    print("eof" if conn.sock.recv(1) == b"" else "data")
