"""The reflection as a page, for a person at a browser: the same document, laid out to read.

A request whose ``Accept`` puts ``text/html`` first (what a browser sends when
it opens a URL) gets this page instead of the JSON, unless ``format=json``
asks for the JSON; ``format=html`` asks for the page from any client. The page
shows the request line, the headers in their order and case, the body, every
source of the client address, the PROXY header, TLS and which server answered,
then the JSON document itself, whole, in the page's only ``<pre>``. Everything
shown is escaped: the reflection is the client's text, and must never become
markup in its own page. No script, no external resource.
"""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.3rem; word-break: break-all; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: .25rem .5rem;
         border-bottom: 1px solid #e4e4e4; }
th { width: 14rem; font-weight: 600; color: #444; }
td, .mono { font-family: ui-monospace, monospace; word-break: break-all; white-space: pre-wrap; }
.none { color: #888; }
pre { padding: .6rem; background: #f4f4f4; overflow-x: auto; font-size: 13px; }
"""


def wants_html(accept: bytes | None) -> bool:
    """Whether ``Accept`` asks for a page first, as a browser opening a URL does."""
    # (llhttp strips the leading whitespace of a value; HTTP/2 forbids it.)
    return accept is not None and accept[:9].lower() == b"text/html"


def render(payload: bytes) -> bytes:
    """The page of one encoded reflection (``payload``, as the JSON answer would be)."""
    document = json.loads(payload)
    request, body = document["request"], document["body"]
    title = f"{request['method']} {request['target']} HTTP/{request['http_version']}"
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{esc(title)} - geventsrv</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        f"<h1>{esc(title)}</h1>\n",
        "<h2>Request</h2>\n",
        rows(
            [
                ("number on its connection", request["number"]),
                ("stream", request["stream"]),
                ("path", request["path"]),
                ("query", request["query"] or None),
                ("cookies", request["cookies"]),
                ("credentials", request["auth"]),
            ]
        ),
    ]
    if request["pseudo_headers"] is not None:
        parts += ["<h2>Pseudo-headers</h2>\n", rows(request["pseudo_headers"])]
    parts += ["<h2>Headers, in the order and case they arrived</h2>\n", rows(request["headers"])]
    if request["trailers"]:
        parts += ["<h2>Trailers</h2>\n", rows(request["trailers"])]
    shown = body["text"] if body["text"] is not None else body["base64"]
    parts += [
        "<h2>Body</h2>\n",
        rows(
            [
                ("size", body["size"]),
                ("arrived coded", body["encoding"]),
                ("form", body["form"]),
                ("text" if body["text"] is not None else "base64", shown if body["size"] else None),
            ]
        ),
        "<h2>Client</h2>\n",
        rows(list(document["client"].items())),
        "<h2>Connection</h2>\n",
        rows([("PROXY header", document["proxy"]), ("TLS", document["tls"])]),
        "<h2>Answered by</h2>\n",
        rows(list(document["server"].items())),
        f"<h2>The reflection, as JSON (schema {esc(document['schema'])})</h2>\n",
        f"<pre>{esc(json.dumps(document, indent=2))}</pre>\n</body>\n</html>\n",
    ]
    return "".join(parts).encode()


def rows(pairs: list[Any]) -> str:
    """A table of ``(name, value)`` pairs (tuples, or the JSON's two-item lists); a value
    that is not text is shown as JSON."""
    if not pairs:
        return '<p class="none">none</p>\n'
    cells = []
    for name, value in pairs:
        if value is None:
            shown = '<span class="none">none</span>'
        elif isinstance(value, str):
            shown = esc(value)
        else:
            shown = esc(json.dumps(value, ensure_ascii=False))
        cells.append(f"<tr><th>{esc(str(name))}</th><td>{shown}</td></tr>")
    return "<table>\n" + "\n".join(cells) + "\n</table>\n"


def esc(text: str) -> str:
    return html.escape(text, quote=True)
