"""The QUIC echo (ALPN ``echo``): what TCP and UDP echo are, on QUIC.

Bytes on each bidirectional stream the client opens come back on that stream,
and its end (FIN) ends the echo's side; a stream the client resets is reset.
Each datagram (RFC 9221) comes back as a datagram. It runs in the endpoint's
greenlet and never waits: a stream's credit (what the client may send next)
moves only while its echo has at most :data:`~geventsrv.quic.SEND_BACKLOG`
bytes unacknowledged, so a client that sends and never reads stalls itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aioquic.quic.events import (
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from geventsrv.quic import SEND_BACKLOG

if TYPE_CHECKING:
    from geventsrv.quic import QuicSession

#: The ALPN a client asks for to be echoed.
ALPN = "echo"


class QuicEcho:
    """The echo on one QUIC connection (the contract of :class:`geventsrv.quic.QuicProtocol`)."""

    def __init__(self, session: QuicSession) -> None:
        self.session = session
        self.quic = session.quic
        #: Streams whose credit waits for their echo to be acknowledged: how far they were read.
        self.held: dict[int, int] = {}
        self.streams = 0
        self.datagrams = 0

    busy = False  # nothing of the echo's is worth waiting for at a stop

    def quic_event(self, event: QuicEvent) -> None:
        quic = self.quic
        if isinstance(event, StreamDataReceived):
            stream_id = event.stream_id
            if stream_id % 4 != 0:
                return  # only the client's bidirectional streams are echoed
            if event.data or event.end_stream:
                quic.send_stream_data(stream_id, event.data, end_stream=event.end_stream)
            if event.end_stream:
                self.streams += 1
                self.held.pop(stream_id, None)
                quic.forget(stream_id)
                return
            read = quic._streams[stream_id].receiver.starting_offset()
            if self._room(stream_id):
                quic.consume(stream_id, read)
            else:
                self.held[stream_id] = read
        elif isinstance(event, DatagramFrameReceived):
            quic.send_datagram_frame(event.data)
            self.datagrams += 1
        elif isinstance(event, StreamReset):
            self.held.pop(event.stream_id, None)
            if not quic._stream_is_discarded(event.stream_id):
                quic.reset_stream(event.stream_id, event.error_code)
            quic.forget(event.stream_id)

    def _room(self, stream_id: int) -> bool:
        stream = self.quic._streams.get(stream_id)
        if stream is None:
            return True
        sender = stream.sender
        return sender._buffer_stop - sender._buffer_start <= SEND_BACKLOG

    def progress(self) -> None:
        """Acknowledgements came: streams with room again get their credit."""
        for stream_id, read in list(self.held.items()):
            if self._room(stream_id):
                del self.held[stream_id]
                self.quic.consume(stream_id, read)

    def go_away(self) -> None:
        pass

    def closed(self) -> None:
        self.held.clear()
