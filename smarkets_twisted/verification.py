"""Credentials go only to a verified exchange: the TLS check the login waits behind.

Twisted's client TLS options verify the certificate chain, then the hostname
with service_identity.  Two gaps: a certificate with no subjectAltName makes
service_identity raise CertificateError, which Twisted's verify callback only
logs (a critical traceback) before letting the handshake complete, so that
the login and its password go to whoever holds such a certificate; and a
chain that does not verify reaches the application as a bare "certificate
verify failed", with no reason a user could act on.

`verify_peer` replaces that callback on the connection, before the handshake
starts, with one that refuses both and names the reason in a
`TLSVerificationFailed`, which `connectionLost` then receives.  Over TLS the
login starts only once the handshake has completed (`handshakeCompleted`), so
a refused certificate gets none of it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, cast

from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure

from smarkets_twisted.errors import TLSVerificationFailed

#: OpenSSL's X509_V_ERR codes a user meets, in words (codes from openssl/x509_vfy.h).
_CHAIN_ERRORS = {
    2: "unknown CA (cannot get the issuer certificate)",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "unknown CA (self-signed certificate)",
    19: "unknown CA (self-signed certificate in the chain)",
    20: "unknown CA (cannot get the local issuer certificate)",
    21: "unknown CA (cannot verify the first certificate)",
    23: "certificate has been revoked",
    26: "certificate is not for server use",
}


def verify_peer(transport: Any) -> None:
    """Make a TLS transport that verifies its peer refuse what Twisted would let through.

    Does nothing for plain TCP, or for a TLS transport set up not to verify.
    """
    if not ISSLTransport.providedBy(transport):
        return
    connection = cast(Any, transport).getHandle()
    if not isinstance(connection, SSL.Connection) or not connection.get_verify_mode() & SSL.VERIFY_PEER:
        return
    servername = connection.get_servername()
    host = servername.decode("ascii") if servername else str(transport.getPeer().host)
    connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _callback(transport, host))


def _callback(transport: Any, host: str) -> Any:
    def refuse(reason: str) -> bool:
        transport.failVerification(Failure(TLSVerificationFailed(reason)))
        return False

    def verify(connection: SSL.Connection, certificate: crypto.X509, error: int, depth: int, ok: int) -> bool:
        if not ok:
            return refuse(_CHAIN_ERRORS.get(error, f"certificate chain error {error}"))
        if depth != 0:
            return True
        try:
            _verify_host(certificate, host)
        except VerificationError:
            return refuse(f"hostname mismatch: the certificate is not for {host}")
        except CertificateError as e:
            # service_identity's message ends with a period; the retry line goes on after it.
            return refuse(f"the certificate cannot be checked against {host}: {str(e).rstrip('.')}")
        except Exception as e:  # anything else unchecked is a refusal too: fail closed
            return refuse(f"the certificate cannot be checked against {host}: {e!r}")
        return True

    return verify


def _verify_host(certificate: crypto.X509, host: str) -> None:
    leaf = certificate.to_cryptography()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        verify_certificate_hostname(leaf, host)
    else:
        verify_certificate_ip_address(leaf, host)
