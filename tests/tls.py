"""Certificates for 127.0.0.1, made with the openssl command: a self-signed one with a client
context that trusts it and nothing else, and a throwaway certificate authority that issues them."""

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.tools import require_program


@dataclass(frozen=True)
class Certificate:
    certificate: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that verifies servers against this certificate alone."""
        return ssl.create_default_context(cafile=self.certificate)


def self_signed_certificate(directory: Path) -> Certificate:
    """A P-256 key and a certificate for 127.0.0.1 and localhost, valid for a day."""
    openssl = require_program("openssl", "openssl")
    made = Certificate(certificate=directory / "cert.pem", key=directory / "key.pem")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(made.key), "-out", str(made.certificate),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return made


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: Path
    key: Path

    def issue(self, directory: Path) -> Certificate:
        """A P-256 key and a certificate for 127.0.0.1 and localhost, signed by this authority,
        for a TLS server or client, valid for a day."""
        directory.mkdir(parents=True, exist_ok=True)
        made = Certificate(certificate=directory / "cert.pem", key=directory / "key.pem")
        _openssl(
            "req", "-x509", "-CA", str(self.certificate), "-CAkey", str(self.key),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "extendedKeyUsage=serverAuth,clientAuth",
            "-keyout", str(made.key), "-out", str(made.certificate),
        )  # fmt: skip
        return made


def certificate_authority(directory: Path) -> CertificateAuthority:
    """A new certificate authority of its own, valid for a day."""
    directory.mkdir(parents=True, exist_ok=True)
    made = CertificateAuthority(certificate=directory / "ca.pem", key=directory / "ca-key.pem")
    _openssl(
        "req", "-x509", "-subj", "/CN=visit-tracker test authority",
        "-keyout", str(made.key), "-out", str(made.certificate),
    )  # fmt: skip
    return made


def _openssl(*arguments: str) -> None:
    """Run `openssl` to make a new P-256 key and a certificate valid for a day."""
    openssl = require_program("openssl", "openssl")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
    subprocess.run([openssl, *arguments, *new_key], check=True, capture_output=True)
