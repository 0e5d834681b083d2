"""The IO-models lab: geventsrv against threads, selectors, asyncio and gevent's StreamServer.

``python -m geventsrv.bench`` (see ``__main__``) measures them on one workload;
``geventsrv.bench.servers`` holds the reference servers, ``loadgen`` the load
generator, ``lab`` one measurement, ``report`` the output. This package never
monkey-patches: every server runs in a process of its own.
"""
