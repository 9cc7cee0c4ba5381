# ambos serve's OAuth side seen by outside libraries.
#   oauth_issuer_check.py ISSUER CA_PEM CERT KEY OTHER_CERT OTHER_KEY TOKEN
# authlib validates the RFC 8414 metadata and, as an OAuth client with the
# certificate (mTLS), gets a token and reads the RFC 6749 error answers;
# jwcrypto verifies TOKEN against the published JWKS. Prints one JSON line:
# the verified claims of TOKEN and of authlib's token, and the errors seen.
import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from jwcrypto import jwk, jwt

issuer, ca, cert, key, other_cert, other_key, token = sys.argv[1:8]
meta = requests.get(issuer + "/.well-known/oauth-authorization-server", verify=ca, timeout=10).json()
AuthorizationServerMetadata(meta).validate()
assert meta["issuer"] == issuer, meta
assert meta["tls_client_certificate_bound_access_tokens"] is True, meta
assert meta["token_endpoint_auth_methods_supported"] == ["tls_client_auth"], meta
assert meta["mtls_endpoint_aliases"]["token_endpoint"] == meta["token_endpoint"], meta

keys = jwk.JWKSet.from_json(requests.get(meta["jwks_uri"], verify=ca, timeout=10).text)


def verify(t):
    checked = jwt.JWT(jwt=t, key=keys, algs=["ES256"], check_claims={"iss": issuer, "aud": "payments", "exp": None})
    assert json.loads(checked.header)["typ"] == "at+jwt"
    return json.loads(checked.claims)


def session(c, k, client_id=None):
    s = OAuth2Session(client_id=client_id, token_endpoint_auth_method="none")
    # No REQUESTS_CA_BUNDLE from the environment in place of our CA.
    s.trust_env = False
    s.cert, s.verify = ((c, k) if c else None), ca
    return s


out = {"cli": verify(token)}
alice = session(cert, key, out["cli"]["client_id"])
got = alice.fetch_token(meta["token_endpoint"], grant_type="client_credentials", audience="payments", scope="pay:read")
assert got["token_type"] == "Bearer" and got["expires_in"] > 0, got
out["authlib"] = verify(got["access_token"])

errors = {}
for label, s, kwargs in [
    ("scope", alice, {"audience": "payments", "scope": "pay:admin"}),
    ("audience", alice, {"audience": "billing"}),
    ("other_client", session(other_cert, other_key), {"audience": "payments"}),
    ("no_certificate", session(None, None), {"audience": "payments"}),
]:
    try:
        s.fetch_token(meta["token_endpoint"], grant_type="client_credentials", **kwargs)
        errors[label] = "issued"
    except OAuthError as e:
        errors[label] = e.error
out["errors"] = errors
print(json.dumps(out))
