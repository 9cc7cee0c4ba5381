import http.client, ssl, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
conn = http.client.HTTPSConnection("localhost", port, context=ctx)
conn.request("GET", "/from-python")
r = conn.getresponse()
print(r.status, conn.sock.version())
