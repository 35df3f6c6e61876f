"""A self-signed certificate for 127.0.0.1, made with the openssl command, and a client context
that trusts it and nothing else."""

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
