import datetime as dt, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
inter = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
now = dt.datetime.now(dt.timezone.utc)
def selfsigned(subject, before, after):
    k = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(k.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(before).not_valid_after(after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        .sign(k, hashes.SHA256()))
decoy = selfsigned(inter.subject, now - dt.timedelta(days=1), now + dt.timedelta(days=30))
old = selfsigned(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "unrelated")]),
                 now - dt.timedelta(days=30), now - dt.timedelta(days=1))
open(sys.argv[2], "wb").write(decoy.public_bytes(serialization.Encoding.PEM))
open(sys.argv[3], "wb").write(old.public_bytes(serialization.Encoding.PEM))
der = inter.public_bytes(serialization.Encoding.DER)
i = der.index(b"\x17\x0d")
junk = der[: i + 2] + b"XXXXXXXXXXXXZ" + der[i + 15 :]
import base64
open(sys.argv[4], "w").write("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(junk).decode() + "-----END CERTIFICATE-----\n")
