"""A PKI and CRLs made by pyca/cryptography (not by ambos), each CRL one
way RFC 5280 says a verifier must not use it. Writes into DIR:

  root.pem, inter.pem, ca.pem (root + inter), inter2.pem (an intermediate
  whose keyUsage lacks cRLSign), server.pem/.key (localhost), client.pem/.key
  (leaf + inter), client2.pem/.key (leaf + inter2), and crl-<case>.pem
  files, each holding the root's CRL plus one CRL of the intermediate.

usage: crl_cases.py DIR
"""
import datetime as dt
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = Path(sys.argv[1])
now = dt.datetime.now(dt.timezone.utc)
day = dt.timedelta(days=1)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pyca"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject, subject_key, issuer, issuer_key, ca, crl_sign=True, eku=None, sans=None):
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + 30 * day)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key((issuer_key if issuer is not None else subject_key).public_key()),
            critical=False,
        )
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=crl_sign, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key if issuer is not None else subject_key, hashes.SHA256())


def pem(*certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_key(path, k):
    path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


def crl(issuer_name, signer_key, number=1, number_critical=False, this=None, nxt=None, extra=None, revoked=()):
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name)
        .last_update(this or now - dt.timedelta(hours=1))
        .next_update(nxt or now + 7 * day)
    )
    if number is not None:
        b = b.add_extension(x509.CRLNumber(number), critical=number_critical)
    if extra is not None:
        b = b.add_extension(extra, critical=True)
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - day).build()
        )
    return b.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


root_key, inter_key, inter2_key, server_key, client_key, client2_key, impostor_key = (key() for _ in range(7))
root = cert(name("pyca Root"), root_key, None, None, ca=True)
inter = cert(name("pyca Intermediate"), inter_key, root, root_key, ca=True)
inter2 = cert(name("pyca No-CRL-Sign Intermediate"), inter2_key, root, root_key, ca=True, crl_sign=False)
server = cert(
    name("localhost"), server_key, inter, inter_key, ca=False, eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
)
client = cert(name("client"), client_key, inter, inter_key, ca=False, eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
              sans=[x509.UniformResourceIdentifier("spiffe://pyca.test/client")])
client2 = cert(name("client2"), client2_key, inter2, inter2_key, ca=False, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])

(out / "root.pem").write_bytes(pem(root))
(out / "inter.pem").write_bytes(pem(inter))
(out / "ca.pem").write_bytes(pem(root, inter))
(out / "server.pem").write_bytes(pem(server, inter))
(out / "client.pem").write_bytes(pem(client, inter))
(out / "client2.pem").write_bytes(pem(client2, inter2))
for stem, k in [("server", server_key), ("client", client_key), ("client2", client2_key)]:
    write_key(out / f"{stem}.key", k)

root_crl = crl(root.subject, root_key)
cases = {
    # Usable: the control.
    "good": crl(inter.subject, inter_key),
    "revoked": crl(inter.subject, inter_key, revoked=[client.serial_number]),
    "no-number": crl(inter.subject, inter_key, number=None),
    "critical-number": crl(inter.subject, inter_key, number_critical=True),
    "unknown-critical": crl(inter.subject, inter_key, extra=x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")),
    "impostor": crl(inter.subject, impostor_key),
    "stale": crl(inter.subject, inter_key, this=now - 10 * day, nxt=now - 2 * day),
    "late": crl(inter.subject, inter_key, this=now - 10 * day, nxt=now - dt.timedelta(minutes=20)),
}
for case, body in cases.items():
    (out / f"crl-{case}.pem").write_bytes(root_crl + body)
# Only the root's CRL: nothing about the intermediate's certificates.
(out / "crl-missing.pem").write_bytes(root_crl)
# Only the intermediate's: nothing about the intermediate itself.
(out / "crl-leaf-only.pem").write_bytes(cases["good"])
# For client2, issued by an intermediate that may not sign CRLs.
(out / "crl-no-crlsign.pem").write_bytes(root_crl + crl(inter2.subject, inter2_key))
print("ok")
