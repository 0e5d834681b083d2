"""Tools for testing geventsrv and what sits in front of it: the tests', the lab's, the soak's.

:mod:`geventsrv.testing.process` starts a server process, waits for it to
listen, reads its figures from outside and stops it; it also holds the
client-side helpers every one of them needs (a connected socket with a
timeout, an exact read). Like ``gevent.testing``, it ships with the package so
that a user's own tests can drive a real server the same way. Nothing here
monkey-patches the process that imports it.
"""
