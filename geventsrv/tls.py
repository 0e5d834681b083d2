"""TLS on the TCP port: the server's context, the handshake, and a socket the handlers can use.

Plain blocking code, like the rest: a connection's greenlet wraps its socket
with gevent's ``ssl`` (cooperative under monkey-patching), runs the handshake
under a deadline, then hands the handlers a :class:`TlsStream`, whose
``recv``/``sendall`` are the TLS socket's own. Every mode works unchanged.

Files are checked once, before the server binds (:func:`server_context`):
a missing or unreadable file, a certificate or key that is not PEM, a key
that does not match its certificate, a CA file without a certificate: each
is one :class:`~geventsrv.config.ConfigError` naming the file and the flag.
"""

from __future__ import annotations

import socket
from typing import Any

import gevent.ssl as ssl

from geventsrv import modes
from geventsrv.config import Config, ConfigError

#: OpenSSL's short names for the subject fields people read.
_SUBJECT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


def _read_pem(path: str, setting: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(setting, f"cannot read {path}: {reason}") from None


def _has_pem(text: str, marker: str) -> bool:
    return f"{marker}-----" in text  # also "EC PRIVATE KEY", "RSA PRIVATE KEY"


def server_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context ``config`` asks for, or ``None`` when TLS is off.

    Raises :class:`~geventsrv.config.ConfigError` naming the setting and the
    file at fault. With ``tls_ca`` every client must present a certificate
    that chains to it (mutual TLS).
    """
    if config.tls_cert is None:
        return None
    cert = config.tls_cert
    cert_text = _read_pem(cert, "tls_cert")
    if not _has_pem(cert_text, "CERTIFICATE"):
        raise ConfigError("tls_cert", f"no PEM certificate in {cert}")
    if config.tls_key is None:
        key, key_setting, key_text = cert, "tls_cert", cert_text
        if not _has_pem(key_text, "PRIVATE KEY"):
            raise ConfigError(
                "tls_cert",
                f"no private key in {cert}: give it with --tls-key, or add it to the file",
            )
    else:
        key, key_setting = config.tls_key, "tls_key"
        key_text = _read_pem(key, key_setting)
        if not _has_pem(key_text, "PRIVATE KEY"):
            raise ConfigError("tls_key", f"no PEM private key in {key}")
    if "ENCRYPTED" in key_text:
        raise ConfigError(key_setting, f"the key in {key} is encrypted; give an unencrypted key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, config.tls_key)
    except ssl.SSLError:
        raise ConfigError(
            key_setting, f"the key in {key} does not match the certificate in {cert}"
        ) from None
    if config.tls_ca is not None:
        if not _has_pem(_read_pem(config.tls_ca, "tls_ca"), "CERTIFICATE"):
            raise ConfigError("tls_ca", f"no PEM CA certificate in {config.tls_ca}")
        try:
            context.load_verify_locations(cafile=config.tls_ca)
        except ssl.SSLError:
            raise ConfigError(
                "tls_ca", f"{config.tls_ca} is not a PEM file of CA certificates"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    offered = offered_alpn(config)
    if offered:
        context.set_alpn_protocols(list(offered))
    context.sni_callback = _remember_server_name
    return context


def offered_alpn(config: Config) -> tuple[str, ...]:
    """The ALPN protocols the server selects from: ``--tls-alpn``, else the mode's own
    (the http mode: h2, then http/1.1; http/1.1 alone with ``--http1-only``)."""
    if config.tls_alpn:
        return config.tls_alpn
    offered = modes.get(config.mode).alpn
    if config.http1_only:
        offered = tuple(protocol for protocol in offered if protocol != "h2")
    return offered


def _remember_server_name(sock: Any, server_name: str | None, context: Any) -> None:
    # Called during the handshake with the TLS socket (gevent's SSLSocket,
    # which takes attributes): keep the name the client asked for, for info.
    sock.server_name_seen = server_name


class TlsStream:
    """A TLS connection as the handlers see it (:class:`~geventsrv.connection.StreamSocket`).

    ``recv`` returns ``b""`` once the client has sent close_notify (or closed
    without one: a truncation the server cannot tell apart, and treats alike).
    :meth:`close` answers with the server's own close_notify before the FIN,
    without waiting for anything from the client.
    """

    __slots__ = ("fileno", "getsockname", "recv", "sendall", "shutdown", "tls")

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls
        # Bound methods stored once: no extra call layer on the hot path.
        self.recv = tls.recv
        self.sendall = tls.sendall
        self.shutdown = tls.shutdown
        self.fileno = tls.fileno
        self.getsockname = tls.getsockname

    def close(self) -> None:
        tls = self.tls
        if tls.fileno() < 0:
            return
        try:
            tls.settimeout(0.0)  # send close_notify; do not wait for the client's
            tls.unwrap()
        except (OSError, ValueError):
            pass  # already shut down, or the peer is gone: nothing to say goodbye to
        tls.close()

    def describe(self) -> dict[str, object]:
        """What was negotiated: version, cipher, SNI, ALPN, the client certificate's subject."""
        tls = self.tls
        cipher = tls.cipher()
        return {
            "version": tls.version(),
            "cipher": cipher[0] if cipher else None,
            "sni": getattr(tls, "server_name_seen", None),
            "alpn": tls.selected_alpn_protocol(),
            "client_cert": _subject(tls.getpeercert()),
        }


def _subject(cert: Any) -> str | None:
    if not cert:
        return None
    parts = []
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            parts.append(f"{_SUBJECT_NAMES.get(name, name)}={value}")
    return ",".join(parts) or None


def handshake(context: ssl.SSLContext, sock: socket.socket) -> TlsStream:
    """Wrap ``sock`` and run the server side of the handshake; the caller bounds the wait.

    Raises ``OSError`` (``ssl.SSLError`` among them) when the client sends
    something that is not TLS, fails verification or goes away.
    """
    tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    try:
        tls.do_handshake()
    except BaseException:
        tls.close()
        raise
    return TlsStream(tls)
