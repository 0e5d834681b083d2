#!/bin/sh
# The container's entry point: serve HTTPS on 8443 beside the other listeners when a
# certificate is mounted, then become geventsrv (exec: it is PID 1, and SIGTERM from
# the runtime reaches the server itself, which drains and exits 0).
# Arguments are passed to geventsrv as they are: `podman run IMAGE --mode info`.
set -eu
tls=/etc/geventsrv/tls
if [ -r "$tls/tls.crt" ] && [ -r "$tls/tls.key" ]; then
    https="8443,tls-cert=$tls/tls.crt,tls-key=$tls/tls.key"
    # Behind a PROXY-protocol front, HTTPS expects the header as the HTTP port does.
    if [ -n "${GEVENTSRV_PROXY_PROTOCOL:-}" ]; then
        https="$https,proxy-protocol=$GEVENTSRV_PROXY_PROTOCOL"
    fi
    GEVENTSRV_LISTEN="${GEVENTSRV_LISTEN:-} $https"
    export GEVENTSRV_LISTEN
fi
exec python3 -m geventsrv "$@"
