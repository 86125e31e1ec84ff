"""A throwaway certificate authority and server certificate for the simulator."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path

from attrs import frozen

_HOSTS = ("127.0.0.1", "localhost", "::1")


@frozen
class TLSMaterial:
    """A server-side TLS context and the CA file a client must trust.

    Attributes:
        context: The server's ``ssl.SSLContext``, loaded with the leaf certificate and key.
        ca_path: Path of a PEM file holding the CA certificate.
        directory: Temporary directory holding ``ca_path``; removed by :meth:`cleanup`.
    """

    context: ssl.SSLContext
    ca_path: str
    directory: str

    def cleanup(self) -> None:
        """Remove the temporary directory holding the CA file."""
        shutil.rmtree(self.directory, ignore_errors=True)


def make_tls() -> TLSMaterial:
    """Create a fresh CA, a server certificate for the loopback names and a server context.

    Returns:
        The TLS material; call :meth:`TLSMaterial.cleanup` when done with it.

    Raises:
        RuntimeError: If the optional ``trustme`` dependency is not installed.
    """
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the simulator's HTTPS mode needs 'trustme': pip install 'resilio[testing]'"
        ) from exc
    authority = trustme.CA(organization_name="resilio Customer.io simulator")
    leaf = authority.issue_cert(*_HOSTS)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    directory = tempfile.mkdtemp(prefix="resilio-cio-sim-")
    ca_path = Path(directory) / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_path))
    return TLSMaterial(context=context, ca_path=str(ca_path), directory=directory)
