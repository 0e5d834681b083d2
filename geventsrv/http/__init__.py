"""The http mode: HTTP's versions and what they serve, side by side.

Each HTTP version is a *front* that owns its wire (framing, keep-alive,
flow control) and turns it into one vocabulary, the version-neutral
:class:`~geventsrv.http.exchange.Exchange`; the application is written once
against that vocabulary, for every version:

``exchange``
    a request's head and body, ``respond``/``send``/``end``, tunnels
``h1``, ``h1read``
    HTTP/1.1 (and 1.0): llhttp reads the requests, the front frames the answers
``app``
    what is served: the reflection, the controls, ``/echo``, ``/sse``, CONNECT
``controls``, ``reflection``, ``websocket``
    the per-request controls, the reflection document, the WebSocket echo
``accounting``, ``mode``, ``settings``
    requests counted and logged; the mode's handler; the mode's settings

Blocking style throughout, as in the rest of the project: one greenlet per
connection reads with ``recv`` and answers with ``sendall``; nothing here
touches an event loop directly.
"""
