#!/bin/sh
# The container's entry point: serve HTTPS on 8443 beside the other listeners when a
# certificate is mounted (and HTTP/3 on 8443/udp, where the image has aioquic and
# GEVENTSRV_HTTP3 does not say otherwise), then become geventsrv (exec: it is PID 1, and SIGTERM from
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
    if [ -z "${GEVENTSRV_HTTP3+set}" ] && python3 -c "import aioquic" 2>/dev/null; then
        GEVENTSRV_HTTP3=1
        export GEVENTSRV_HTTP3
    fi
fi
# The port Alt-Svc names (a Service's 443, say) is for HTTP/3: dropped where HTTP/3 is off
# (no certificate, no aioquic, or turned off), so that one manifest serves both.
case "$(printf %s "${GEVENTSRV_HTTP3:-0}" | tr A-Z a-z)" in
    1|true|yes|on) ;;
    *) unset GEVENTSRV_HTTP3_ALT_SVC_PORT ;;
esac
exec python3 -m geventsrv "$@"
