"""The geventsrv tutorial: greenlet switching, gevent scheduling and monkey-patching.

``python -m geventsrv.tutorial`` lists the lessons; ``python -m
geventsrv.tutorial NAME`` runs one with a narrated trace; ``--all`` runs them in
order. Each lesson is a small module in this package with a ``run(narrator)``
function. This package imports nothing on its own, so that a lesson run as a
program (``python -m geventsrv.tutorial.echo_server``) can monkey-patch first.
"""
