"""Reference echo servers for the IO-models lab, one model per module.

Each is a complete, byte-exact TCP echo server, small enough to read in a
minute, and runnable on its own: ``python -m geventsrv.bench.servers.NAME
--port 0`` prints ``listening on HOST:PORT`` on stderr, then serves until
SIGTERM or SIGINT. They are teaching material as much as baselines: read them
side by side with the tutorial.
"""
