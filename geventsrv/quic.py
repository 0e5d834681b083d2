"""QUIC (RFC 9000) on one UDP socket, driven by greenlets: what HTTP/3 and the QUIC echo run on.

aioquic does QUIC without any IO of its own: it is given datagrams
(``receive_datagram``), says what to send (``datagrams_to_send``) and when it
next needs the time (``get_timer``/``handle_timer``), and reports what
happened (``next_event``). Here that is driven the way the TCP side drives
its parsers:

* one greenlet per UDP socket, :meth:`QuicEndpoint.serve`, reads datagrams
  with a plain blocking ``recvfrom`` and routes each by its destination
  connection id to its :class:`QuicSession`; a datagram that opens a
  connection is judged first (version, size, address validation by Retry,
  the bounds);
* one timer per connection, on the hub's loop: no greenlet waits for it;
* the application's greenlets (one per request stream, in
  :mod:`geventsrv.http.h3`) write through the session and wait on it for
  the peer's acknowledgements and window, never on the socket: what they
  write is sent once per turn of the hub, all of it in a burst of
  non-blocking ``sendto`` calls (a datagram the kernel has no room for is
  lost, as on any path, and QUIC sends it again);
* datagrams begin at QUIC's 1,200 bytes and grow to what each connection's
  path is probed to carry (:mod:`geventsrv.quicpath`).

Bounded, since the peer controls it all: connections per client address
(``--http3-max-per-client``) and in all (``--max-conns``, shared with TCP),
the handshake's time (``--http3-handshake-timeout``), what a client may
send before the application has read it (receive credit given as it reads,
:class:`FlowControlledQuic`, rather than aioquic's own, which doubles as it
receives), what waits to be sent (:data:`SEND_BACKLOG` per stream, then the
writer waits). Before an address is validated aioquic sends at most three
times what it received from it (RFC 9000 8.1); with ``--http3-retry`` a
connection begins only once the client has proved its address by echoing a
Retry token, so a flood of Initial packets from spoofed addresses costs a
Retry packet each and no state.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Protocol

import gevent
from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
)
from aioquic.quic.packet import (
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
    pull_quic_transport_parameters,
)
from aioquic.quic.packet_builder import QuicDeliveryState, QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler
from gevent.event import Event

from geventsrv.addresses import format_address
from geventsrv.connection import Connection
from geventsrv.limits import AccessList, client_ip, client_key
from geventsrv.quicpath import BASE_SIZE, MAX_SIZE, PathSearch, route_limit

log = logging.getLogger("geventsrv.server")

#: The smallest datagram that may open a connection (RFC 9000 14.1).
SMALLEST_INITIAL = 1200
#: Unacknowledged bytes one stream may have queued before its writer waits.
SEND_BACKLOG = 256 * 1024
#: Datagrams read from the socket, at most, before the connections they went to answer;
#: and the time a burst may take before the hub gets its turn.
BURST = 64
BURST_SECONDS = 0.002
#: The socket's send buffer asked of the kernel: a burst of a whole congestion window.
SEND_BUFFER = 4 << 20
#: MAX_STREAM_DATA and MAX_DATA frames are sent once this share of a window is read.
CREDIT_STEP = 4
#: A peer's max_udp_payload_size when it sends none (RFC 9000 18.2).
DEFAULT_MAX_UDP_PAYLOAD = 65527
#: Frame capacity aioquic reserves for MAX_STREAM_DATA and MAX_DATA.
LIMIT_FRAME_CAPACITY = 1 + 8 + 8


class QuicProtocol(Protocol):
    """What runs on a connection once its handshake settled an ALPN (HTTP/3, the echo)."""

    def quic_event(self, event: QuicEvent) -> None:
        """Handle one of the connection's events; never waits."""

    def progress(self) -> None:
        """A datagram came (acknowledgements, credit): whatever waited for room may go on."""

    def go_away(self) -> None:
        """The server is stopping: accept nothing new, finish what is under way."""

    @property
    def busy(self) -> bool:
        """Whether work is under way (the connection closes when it is done, at a stop)."""

    def closed(self) -> None:
        """The connection has ended: end its work."""


#: Makes the protocol for a session, by the ALPN its handshake settled.
ProtocolFactory = Callable[["QuicSession"], QuicProtocol]


class FlowControlledQuic(QuicConnection):
    """aioquic's connection, but a peer may send only what the application has room for.

    aioquic raises a stream's receive window to twice what has arrived, and the
    connection's likewise, whether or not anything was read: a client could make
    the server hold any amount. Here the credit moves with what the application
    has *read* (:meth:`consume`): a stream is given ``window`` past it, the
    connection ``connection_window`` past all of them. The two methods below
    replace aioquic's own, which differ only in how they choose the value.
    """

    def __init__(
        self, *, window: int, connection_window: int, max_streams: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        # Requests at once: QUIC's own bound, so a client cannot even open more.
        self._local_max_streams_bidi.value = max_streams
        self.window = window
        self.connection_window = connection_window
        self.consumed: dict[int, int] = {}
        self.consumed_total = 0
        #: The largest datagram the peer accepts (its max_udp_payload_size, RFC 9000 18.2).
        self.peer_max_udp_payload = DEFAULT_MAX_UDP_PAYLOAD

    def consume(self, stream_id: int, offset: int) -> None:
        """The application has read the stream up to ``offset`` (its framing included)."""
        before = self.consumed.get(stream_id, 0)
        if offset > before:
            self.consumed[stream_id] = offset
            self.consumed_total += offset - before

    def forget(self, stream_id: int) -> None:
        self.consumed.pop(stream_id, None)

    # -- the path's datagram size (geventsrv.quicpath) ---------------------

    def _parse_transport_parameters(self, data: bytes, from_session_ticket: bool = False) -> None:
        super()._parse_transport_parameters(data, from_session_ticket)
        # aioquic keeps no record of the largest datagram the peer accepts: read it here.
        parameters = pull_quic_transport_parameters(Buffer(data=data))
        self.peer_max_udp_payload = parameters.max_udp_payload_size or DEFAULT_MAX_UDP_PAYLOAD

    def probe_path(self, size: int, now: float, handler: Callable[..., None]) -> bytes | None:
        """A probe of exactly ``size`` bytes (a PING, padded), or None if nothing may be
        sent now. ``handler(state, size)`` learns whether it was acknowledged or lost.
        Outside the congestion window, and its loss is no sign of congestion (RFC 9000
        14.4): aioquic tracks it for its acknowledgement only."""
        crypto = self._cryptos[tls.Epoch.ONE_RTT]
        version = self._version
        if (
            not self._handshake_confirmed
            or self._close_pending
            or version is None
            or not crypto.send.is_valid()
        ):
            return None
        builder = QuicPacketBuilder(
            host_cid=self.host_cid, is_client=False, max_datagram_size=size,
            packet_number=self._packet_number, peer_cid=self._peer_cid.cid,
            spin_bit=self._spin_bit, version=version,
        )  # fmt: skip
        builder.start_packet(QuicPacketType.ONE_RTT, crypto)
        builder.start_frame(QuicFrameType.PING, capacity=1, handler=handler, handler_args=(size,))
        builder._datagram_needs_padding = True  # pad the packet to the datagram's size
        datagrams, packets = builder.flush()
        self._packet_number = builder.packet_number
        for packet in packets:
            packet.sent_time = now
            packet.in_flight = False
            self._loss.on_packet_sent(packet=packet, space=self._spaces[tls.Epoch.ONE_RTT])
        return datagrams[0]

    def use_datagram_size(self, size: int) -> None:
        """Send datagrams of up to ``size`` bytes from now on (the packet builder, and the
        congestion controller's and pacer's unit, which aioquic fixes at the start)."""
        self._max_datagram_size = size
        recovery = self._loss
        recovery._pacer._max_datagram_size = size
        controller: Any = recovery._cc
        if hasattr(controller, "_max_datagram_size"):
            controller._max_datagram_size = size
        if hasattr(controller, "additive_increase_factor"):  # cubic's
            controller.additive_increase_factor = size

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        if not stream.max_stream_data_local:
            return  # a stream of ours that only sends
        wanted = self.consumed.get(stream.stream_id, 0) + self.window
        if wanted - stream.max_stream_data_local >= self.window // CREDIT_STEP:
            stream.max_stream_data_local = wanted
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=LIMIT_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        max_data = self._local_max_data
        wanted = self.consumed_total + self.connection_window
        if wanted - max_data.value >= self.connection_window // CREDIT_STEP:
            max_data.value = wanted
        for limit in (max_data, self._local_max_streams_bidi, self._local_max_streams_uni):
            if limit is not max_data and limit.sent - limit.used >= limit.value - limit.sent:
                continue  # batched, as aioquic does: the peer still has streams to open
            if limit.value != limit.sent:
                buf = builder.start_frame(
                    limit.frame_type,
                    capacity=LIMIT_FRAME_CAPACITY,
                    handler=self._on_connection_limit_delivery,
                    handler_args=(limit,),
                )
                buf.push_uint_var(limit.value)
                limit.sent = limit.value


def server_configuration(
    config: Any, alpn: list[str], connection_window: int, window: int
) -> QuicConfiguration:
    """aioquic's configuration for the server's side, from geventsrv's settings: its
    certificate and key, client certificates with ``--tls-ca``, the idle timeout, the
    receive windows, datagrams (RFC 9221) on."""
    import ssl

    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=alpn,
        idle_timeout=config.idle_timeout or 3600.0,
        max_data=connection_window,
        max_stream_data=window,
        max_datagram_frame_size=65536,
    )
    _load_identity(configuration, config.tls_cert, config.tls_key)
    if config.tls_ca is not None:
        configuration.load_verify_locations(cafile=config.tls_ca)
        configuration.verify_mode = ssl.CERT_REQUIRED
    return configuration


#: A private key's PEM block, of any kind (PKCS#8, RSA, EC), in a file that may hold more.
PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.S)


def _load_identity(configuration: QuicConfiguration, cert: str, key: str | None) -> None:
    """The certificate chain and its key, as ``--tls-cert`` and ``--tls-key`` give them:
    the key may sit in the certificate's file, before or after the certificates (aioquic's
    own loader takes it only after them)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(cert, "rb") as file:
        text = file.read()
    chain = x509.load_pem_x509_certificates(text)
    if key is not None:
        with open(key, "rb") as file:
            text = file.read()
    found = PEM_KEY.search(text)
    if found is None:
        raise ValueError(f"no private key in {key or cert}")
    configuration.certificate, configuration.certificate_chain = chain[0], chain[1:]
    configuration.private_key = load_pem_private_key(found.group(0), password=None)


class QuicSession:
    """One QUIC connection: aioquic's state, its timer, its addresses, its protocol."""

    def __init__(self, endpoint: QuicEndpoint, quic: FlowControlledQuic, addr: NetworkAddress,
                 key: str, number: int) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.quic = quic
        self.addr = addr
        self.key = key
        #: The client's connection as the HTTP application sees one (addresses, TLS, counts).
        self.conn = Connection(endpoint.sock, format_address(*addr[:2]), number)
        self.protocol: QuicProtocol | None = None
        self.started = time.monotonic()
        self.established = False
        self.ended = False
        #: Set (and dropped) at the next datagram: acknowledgements or credit may have freed
        #: room to send. Made only when a writer waits.
        self.progress: Event | None = None
        self._timer = endpoint.hub.loop.timer(0.0)
        self._timer_at: float | None = None
        self._flush_pending = False
        #: The search for the path's datagram size, from the handshake's end until done.
        self.path: PathSearch | None = None
        self.path_addr: NetworkAddress | None = None
        #: What the reflection's ``tls.quic`` shows, once the handshake is done.
        self.quic_info: dict[str, Any] = {}

    # -- input ------------------------------------------------------------

    def receive(self, data: bytes, addr: NetworkAddress) -> None:
        """One datagram in; what it calls for is sent by :meth:`received`, once per burst."""
        self.quic.receive_datagram(data, addr, time.monotonic())
        self.conn.bytes_received += len(data)
        self._process()

    def received(self) -> None:
        """A burst of datagrams is in: answer it (acknowledgements, what they let go), and
        wake the writers waiting for room."""
        if self.protocol is not None:
            self.protocol.progress()
        if self.path_addr is not None and self.quic.get_peer_address() != self.path_addr:
            self._search_path()  # the client moved: its new path is probed from the base
        self.flush()
        progress = self.progress
        if progress is not None:
            self.progress = None
            progress.set()

    def _on_timer(self) -> None:
        self._timer_at = None
        self.quic.handle_timer(time.monotonic())
        self._process()
        self.flush()

    def _process(self) -> None:
        quic, endpoint = self.quic, self.endpoint
        while (event := quic.next_event()) is not None:
            if isinstance(event, ConnectionIdIssued):
                endpoint.sessions[event.connection_id] = self
            elif isinstance(event, ConnectionIdRetired):
                endpoint.sessions.pop(event.connection_id, None)
            elif isinstance(event, HandshakeCompleted):
                self._established(event)
            elif isinstance(event, ConnectionTerminated):
                self._end(event.reason_phrase or f"code {event.error_code}")
                return
            if self.protocol is not None:
                self.protocol.quic_event(event)

    def _established(self, event: HandshakeCompleted) -> None:
        self.established = True
        handshake = self.quic.tls
        schedule = handshake.key_schedule
        suite = schedule.cipher_suite if schedule is not None else None
        peer = handshake._peer_certificate
        self.quic_info = {
            "version": self.quic._version,
            # The server's id for the connection, and the one the client first used.
            "connection_id": self.quic.host_cid.hex(),
            "original_connection_id": self.quic.original_destination_connection_id.hex(),
            # What the path carries, as probed so far (geventsrv.quicpath).
            "datagram_size": BASE_SIZE,
        }
        self.conn.tls = {
            "version": "TLSv1.3",
            "cipher": f"TLS_{suite.name}" if suite is not None else None,
            "sni": None,  # aioquic's server side keeps no record of it
            "alpn": event.alpn_protocol,
            "client_cert": peer.subject.rfc4514_string() if peer is not None else None,
            "quic": self.quic_info,
        }
        self._search_path()
        factory = self.endpoint.protocols.get(event.alpn_protocol or "")
        if factory is None:  # aioquic offers only the ALPNs it was given: never here
            self.quic.close(error_code=0x178, reason_phrase="no application protocol")
            return
        self.protocol = factory(self)

    # -- the path's datagram size -------------------------------------------

    def _search_path(self) -> None:
        """Begin (again) at the base size, and search up to the least of the bounds."""
        addr = self.path_addr = self.quic.get_peer_address()
        ceiling = min(self.endpoint.max_datagram, self.quic.peer_max_udp_payload)
        route = route_limit(addr[0]) if addr is not None else None
        if route is not None:
            ceiling = min(ceiling, route)
        self._use_size(BASE_SIZE)
        self.path = PathSearch(ceiling) if ceiling > BASE_SIZE else None

    def _probe_path(self, now: float) -> None:
        search = self.path
        assert search is not None
        size = search.next_probe(now)
        if size is None:
            if search.done:
                self.path = None
                log.debug("%s: QUIC datagrams of %d bytes", self.conn.client, search.size)
            return
        datagram = self.quic.probe_path(size, now, partial(self._probed, search))
        if datagram is None or self.path_addr is None:
            search.lost(size)  # not sent (the connection is closing): not tried again
            return
        self.endpoint.send(datagram, self.path_addr)
        self.conn.bytes_sent += len(datagram)

    def _probed(self, search: PathSearch, state: QuicDeliveryState, size: int) -> None:
        if state == QuicDeliveryState.ACKED:
            search.acknowledged(size)
            if search is self.path and search.size != self.quic._max_datagram_size:
                self._use_size(search.size)
        else:
            search.lost(size)

    def _use_size(self, size: int) -> None:
        self.quic.use_datagram_size(size)
        self.quic_info["datagram_size"] = size

    # -- output -----------------------------------------------------------

    def flush(self) -> None:
        """Send what aioquic has to send, and set the timer it asks for; never waits."""
        quic, send = self.quic, self.endpoint.send
        now = time.monotonic()
        for data, addr in quic.datagrams_to_send(now):
            send(data, addr)
            self.conn.bytes_sent += len(data)
        if self.path is not None:
            self._probe_path(now)
        at = quic.get_timer()
        if at != self._timer_at:
            self._timer.stop()
            self._timer_at = at
            if at is not None:
                self._timer = self.endpoint.hub.loop.timer(max(at - time.monotonic(), 0.0))
                self._timer.start(self._on_timer)

    def schedule_flush(self) -> None:
        """Send what a stream's greenlet wrote, once, at the hub's next turn."""
        if not self._flush_pending:
            self._flush_pending = True
            self.endpoint.hub.loop.run_callback(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_pending = False
        if not self.ended:
            self.flush()

    def wait_progress(self, timeout: float | None) -> bool:
        """Wait for the peer's next datagram (acknowledgements, credit); whether one came."""
        progress = self.progress
        if progress is None:
            progress = self.progress = Event()
        return progress.wait(timeout)

    def close(self, code: int, reason: str) -> None:
        if not self.ended:
            self.quic.close(error_code=code, reason_phrase=reason)
            self.schedule_flush()

    def abort(self, why: str) -> None:
        """Close now: CONNECTION_CLOSE sent at once, and the connection forgotten (no wait
        for the close's own timer)."""
        if not self.ended:
            self.quic.close(error_code=0x0, reason_phrase=why)
            self.flush()
            self._end(why)

    def _end(self, why: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._timer.stop()
        self.endpoint.forget(self)
        log.debug("%s: QUIC connection ended: %s", self.conn.client, why)
        if self.protocol is not None:
            self.protocol.closed()
        progress = self.progress
        if progress is not None:
            self.progress = None
            progress.set()


class QuicEndpoint:
    """Every QUIC connection on one UDP socket; :meth:`serve` runs until the socket closes."""

    def __init__(
        self,
        sock: socket.socket,
        configuration: QuicConfiguration,
        protocols: dict[str, ProtocolFactory],
        *,
        retry: bool,
        max_per_client: int,
        handshake_timeout: float,
        window: int,
        max_streams: int = 100,
        spare_loopback: bool = False,
        max_datagram: int = MAX_SIZE,
        slots: Any = None,
        access: AccessList | None = None,
        ipv6_prefix: int = 64,
    ) -> None:
        self.sock = sock
        self.configuration = configuration
        self.protocols = protocols
        self.retry = QuicRetryTokenHandler() if retry else None
        #: Connections one client address may hold (0: no bound), loopback spared or not.
        self.max_per_client = max_per_client
        self.spare_loopback = spare_loopback
        self.max_streams = max_streams
        #: The largest datagram sent, once a connection's path is probed to carry it.
        self.max_datagram = max_datagram
        self.handshake_timeout = handshake_timeout
        self.window = window
        self.slots = slots
        self.access = access if access is not None and access.active else None
        self.ipv6_prefix = ipv6_prefix
        self.hub = gevent.get_hub()
        # aioquic logs every connection's steps at INFO: the server logs its own lines.
        logging.getLogger("quic").setLevel(logging.WARNING)
        #: Every connection id in use, to its session.
        self.sessions: dict[bytes, QuicSession] = {}
        self.open: set[QuicSession] = set()
        self.per_client: dict[str, int] = {}
        self.stopping = False
        self.numbers = 0
        # Counters, for the log and the metrics.
        self.connections = 0
        self.retries = 0
        self.refused = 0
        self.unrouted = 0
        self.send_errors = 0
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SEND_BUFFER)
        except OSError:
            pass  # the kernel's own sizes will do
        # Sends never wait: the plain socket underneath, without the cooperative wrapper.
        self._raw = getattr(sock, "_sock", sock)
        self._reaper: gevent.Greenlet[[], None] | None = None

    def send(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            self._raw.sendto(data, addr)
        except OSError:  # no room in the kernel (lost, as on a path), or the peer is gone
            self.send_errors += 1

    def serve(self) -> None:
        sock = self.sock
        self._reaper = gevent.spawn(self._reap_handshakes)
        raw = self._raw
        touched: dict[QuicSession, None] = {}
        try:
            while True:
                try:
                    data, addr = sock.recvfrom(65536)
                except OSError as exc:
                    if sock.fileno() < 0:
                        return  # closed: the server is stopping
                    log.debug("quic: receive failed: %s", exc)
                    continue
                # What else has queued is read at once, and each connection answers the
                # burst once: one acknowledgement and one flush for many datagrams. A burst
                # is bounded in count and in time (a handshake costs milliseconds of
                # crypto); one cut short lets the hub turn before the next, so that the
                # TCP side's connections get their share under any QUIC load.
                began = time.monotonic()
                full = True
                for _ in range(BURST):
                    session = self.datagram(data, addr)
                    if session is not None:
                        touched[session] = None
                    if time.monotonic() - began > BURST_SECONDS:
                        break
                    try:
                        data, addr = raw.recvfrom(65536)
                    except OSError:  # nothing more queued (or closed: the next wait says)
                        full = False
                        break
                for session in touched:
                    if not session.ended:
                        self._answer(session)
                touched.clear()
                if full:
                    gevent.sleep(0)  # more is queued: the hub's turn comes first
        finally:
            self._reaper.kill(block=False)

    def _answer(self, session: QuicSession) -> None:
        try:
            session.received()
        except Exception as exc:  # a bug must cost this connection only
            log.error("%s: QUIC connection failed: %r", session.conn.client, exc)
            log.debug("QUIC failure", exc_info=True)
            session.close(0x1, "the server failed")  # INTERNAL_ERROR

    def datagram(self, data: bytes, addr: NetworkAddress) -> QuicSession | None:
        """Route one datagram to its connection, or judge whether it may open one; the
        connection it went to."""
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self.configuration.connection_id_length
            )
        except ValueError:
            self.unrouted += 1
            return None
        session = self.sessions.get(header.destination_cid)
        if session is None:
            try:
                session = self._admit(header, data, addr)
            except Exception as exc:  # a bug must cost this datagram only
                log.error("%s: QUIC connection refused: %r", format_address(*addr[:2]), exc)
                return None
            if session is None:
                return None
        try:
            session.receive(data, addr)
        except Exception as exc:  # a bug must cost this connection only
            log.error("%s: QUIC connection failed: %r", session.conn.client, exc)
            log.debug("QUIC failure", exc_info=True)
            session.close(0x1, "the server failed")  # INTERNAL_ERROR
        return session

    def _admit(self, header: Any, data: bytes, addr: NetworkAddress) -> QuicSession | None:
        versions = self.configuration.supported_versions
        if header.version is not None and header.version not in versions:
            if header.packet_type != QuicPacketType.VERSION_NEGOTIATION and header.version:
                self.send(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=versions,
                    ),
                    addr,
                )
            return None
        if header.packet_type != QuicPacketType.INITIAL or len(data) < SMALLEST_INITIAL:
            self.unrouted += 1
            return None
        if self.stopping:
            self.refused += 1
            return None
        ip = client_ip(addr[0])
        if self.access is not None and not self.access.permits(ip):
            self.refused += 1
            return None
        original = header.destination_cid
        retry_source: bytes | None = None
        if self.retry is not None:
            if not header.token:
                source = os.urandom(8)
                token = self.retry.create_token(
                    address=addr, original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=source, now=time.time(),
                )  # fmt: skip
                self.send(
                    encode_quic_retry(
                        version=header.version, source_cid=source,
                        destination_cid=header.source_cid,
                        original_destination_cid=header.destination_cid, retry_token=token,
                    ),
                    addr,
                )  # fmt: skip
                self.retries += 1
                return None
            try:
                original = self.retry.validate_token(
                    address=addr, destination_cid=header.destination_cid, token=header.token,
                    now=time.time(),
                )  # fmt: skip
            except ValueError:
                self.refused += 1
                return None
            retry_source = header.destination_cid
        key = client_key(ip, self.ipv6_prefix)
        bounded = self.max_per_client and not (self.spare_loopback and ip.is_loopback)
        if (bounded and self.per_client.get(key, 0) >= self.max_per_client) or (
            self.slots is not None and self.slots.locked()
        ):
            self.refused += 1
            log.debug("%s: QUIC connection refused: over a bound", format_address(*addr[:2]))
            return None
        if self.slots is not None:
            self.slots.acquire(blocking=False)
        quic = FlowControlledQuic(
            window=self.window,
            connection_window=self.configuration.max_data,
            max_streams=self.max_streams,
            configuration=self.configuration,
            original_destination_connection_id=original,
            retry_source_connection_id=retry_source,
        )
        self.numbers += 1
        self.connections += 1
        session = QuicSession(self, quic, addr, key, self.numbers)
        self.per_client[key] = self.per_client.get(key, 0) + 1
        self.open.add(session)
        self.sessions[header.destination_cid] = session
        self.sessions[quic.host_cid] = session
        return session

    def forget(self, session: QuicSession) -> None:
        """A connection has ended: its ids, its place among its client's and in all."""
        for cid in [cid for cid, held in self.sessions.items() if held is session]:
            del self.sessions[cid]
        if session in self.open:
            self.open.discard(session)
            left = self.per_client.get(session.key, 1) - 1
            if left:
                self.per_client[session.key] = left
            else:
                self.per_client.pop(session.key, None)
            if self.slots is not None:
                self.slots.release()

    def _reap_handshakes(self) -> None:
        """Close connections whose handshake did not finish in time (a client that began
        and went away, or one that trickles): they hold a place until then."""
        period = max(min(self.handshake_timeout / 4, 1.0), 0.05)
        while True:
            gevent.sleep(period)
            now = time.monotonic()
            for session in list(self.open):
                if not session.established and now - session.started > self.handshake_timeout:
                    session.abort("handshake timeout")

    # -- stopping ---------------------------------------------------------

    def go_away(self) -> None:
        """Accept no new connection; tell each open one to finish what it does."""
        self.stopping = True
        for session in list(self.open):
            if session.protocol is not None:
                session.protocol.go_away()
            if session.protocol is None or not session.protocol.busy:
                session.close(0x0, "server stopping")

    @property
    def busy(self) -> bool:
        return any(s.protocol is not None and s.protocol.busy for s in self.open)

    def close_all(self) -> None:
        """Close every connection now (CONNECTION_CLOSE), and send it before returning."""
        for session in list(self.open):
            session.abort("server stopped")


def collect_metrics(endpoints: list[QuicEndpoint]) -> Iterator[Any]:
    """The endpoints' Prometheus families (summed), for the server's collector."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def total(name: str) -> int:
        return sum(getattr(endpoint, name) for endpoint in endpoints)

    yield CounterMetricFamily(
        "geventsrv_quic_connections", "QUIC connections begun.", value=total("connections")
    )
    yield GaugeMetricFamily(
        "geventsrv_quic_open_connections", "QUIC connections open now.",
        value=sum(len(endpoint.open) for endpoint in endpoints),
    )  # fmt: skip
    yield CounterMetricFamily(
        "geventsrv_quic_retries", "Retry packets sent to validate an address.",
        value=total("retries"),
    )  # fmt: skip
    dropped = CounterMetricFamily(
        "geventsrv_quic_datagrams_dropped",
        "Datagrams that opened no connection and belonged to none (refused: over a bound, "
        "denied, an invalid token, a stop), and sends the kernel refused.",
        labels=["reason"],
    )
    for reason, name in (("refused", "refused"), ("unrouted", "unrouted"),
                         ("send_failed", "send_errors")):  # fmt: skip
        dropped.add_metric([reason], total(name))
    yield dropped
