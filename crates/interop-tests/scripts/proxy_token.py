"""Access tokens from an independent JOSE library (jwcrypto), for the
proxy's token routes.
keys DIR [KID]: writes DIR/issuer.json (a P-256 private JWK, kid k1) and
  DIR/jwks.json (its public JWKS); another KID: issuer-KID.json, jwks-KID.json.
token DIR CERT KIND [CLAIM=JSON ...]: prints a token signed ES256 by DIR's
  key, bound to CERT (cnf.x5t#S256 = base64url(SHA-256(DER))), with the
  default claims (iss https://ca.test, aud payments, scope payments:write,
  exp in 5 min) changed by the CLAIM=JSON arguments. KIND: good; flipped
  (one signature bit changed); none (alg none, unsigned); hs256 (HMAC with
  the public JWKS file as the secret). Env KID: sign with that key (default
  k1); RANDOM_KIDS=N: print N good tokens, each naming a random unknown kid."""
import base64, hashlib, json, os, ssl, sys, time, uuid
from jwcrypto import jwk, jws, jwt


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


if sys.argv[1] == "keys":
    d = sys.argv[2]
    kid = sys.argv[3] if len(sys.argv) > 3 else "k1"
    suffix = "" if kid == "k1" else f"-{kid}"
    key = jwk.JWK.generate(kty="EC", crv="P-256", kid=kid)
    open(f"{d}/issuer{suffix}.json", "w").write(key.export_private())
    open(f"{d}/jwks{suffix}.json", "w").write(json.dumps({"keys": [json.loads(key.export_public())]}))
    sys.exit(0)

d, cert, kind = sys.argv[2], sys.argv[3], sys.argv[4]
der = ssl.PEM_cert_to_DER_cert(open(cert).read().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
now = int(time.time())
claims = {"iss": "https://ca.test", "sub": "client", "aud": "payments", "iat": now, "exp": now + 300,
          "scope": "payments:read payments:write", "cnf": {"x5t#S256": b64(hashlib.sha256(der).digest())}}
for arg in sys.argv[5:]:
    name, _, value = arg.partition("=")
    value = json.loads(value)
    if value is None:
        claims.pop(name, None)
    else:
        claims[name] = value if not isinstance(value, (int, float)) or name not in ("exp", "nbf") else now + value
kid = os.environ.get("KID", "k1")
key = jwk.JWK.from_json(open(f"{d}/issuer{'' if kid == 'k1' else '-' + kid}.json").read())
if kind == "none":
    print(b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode()) + ".")
elif kind == "hs256":
    secret = jwk.JWK(kty="oct", k=b64(open(f"{d}/jwks.json", "rb").read()))
    t = jwt.JWT(header={"alg": "HS256", "kid": "k1"}, claims=claims)
    t.make_signed_token(secret)
    print(t.serialize())
elif os.environ.get("RANDOM_KIDS"):
    for _ in range(int(os.environ["RANDOM_KIDS"])):
        t = jwt.JWT(header={"alg": "ES256", "kid": str(uuid.uuid4()), "typ": "at+jwt"}, claims=claims)
        t.make_signed_token(key)
        print(t.serialize())
else:
    t = jwt.JWT(header={"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims=claims)
    t.make_signed_token(key)
    token = t.serialize()
    if kind == "flipped":
        head, body, sig = token.split(".")
        raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
        raw[5] ^= 1
        token = f"{head}.{body}.{b64(bytes(raw))}"
    print(token)
