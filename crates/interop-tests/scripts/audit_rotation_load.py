import http.client, ssl, sys, threading
port, ca, cert, key, n, conns = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ok = []
def worker(k):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    good = 0
    for i in range(k, n, conns):
        c.request("GET", "/r/%d" % i)
        r = c.getresponse()
        r.read()
        good += r.status == 200
    ok.append(good)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sum(ok))
