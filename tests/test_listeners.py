"""``--listen`` specs: each listener's settings, and every bad spec refused in one line."""

from __future__ import annotations

import pytest
from test_cli import assert_one_line_error, run_cli

from geventsrv.config import Config, ConfigError
from geventsrv.exitcodes import USAGE as EXIT_USAGE
from geventsrv.flags import parse_config, to_argv
from geventsrv.listeners import listener_configs, parse_spec


def test_a_port_alone_listens_on_the_servers_host():
    assert parse_spec("8443", "::1") == {"host": "::1", "port": 8443}


@pytest.mark.parametrize(
    "spec, host",
    [("0.0.0.0:80", "0.0.0.0"), ("[::]:80", "::"), ("localhost:80", "localhost")],
)
def test_a_host_may_be_given_ipv6_in_brackets(spec, host):
    assert parse_spec(spec, "127.0.0.1") == {"host": host, "port": 80}


def test_options_name_their_settings():
    spec = "9000,mode=echo,udp,tls-cert=/c.pem,tls-key=/k.pem,tls-ca=/ca.pem,proxy-protocol=v2"
    assert parse_spec(spec, "127.0.0.1") == {
        "host": "127.0.0.1",
        "port": 9000,
        "mode": "echo",
        "udp": True,
        "tls_cert": "/c.pem",
        "tls_key": "/k.pem",
        "tls_ca": "/ca.pem",
        "proxy_protocol": "v2",
    }


def test_a_listener_takes_the_servers_settings_but_not_its_socket(certs):
    config = Config(
        mode="http",
        port=0,
        max_conns=50,
        idle_timeout=7.0,
        http_max_body=1000,
        tls_cert=certs.server,
        tls_handshake_timeout=3.0,
        proxy_protocol="v1",
        listen=("8080", "7007,mode=echo,udp"),
    ).validate()
    http, echo = listener_configs(config)
    assert (http.port, http.mode, http.max_conns, http.idle_timeout) == (8080, "http", 50, 7.0)
    assert http.http_max_body == 1000  # the mode's settings go with the mode
    # Plain, no PROXY header, no UDP: what the spec did not ask for.
    assert (http.tls_cert, http.proxy_protocol, http.udp, http.listen) == (None, None, False, ())
    assert http.tls_handshake_timeout == Config().tls_handshake_timeout
    assert (echo.mode, echo.udp) == ("echo", True)
    assert echo.http_max_body == Config().http_max_body


def test_the_http_settings_are_allowed_when_only_a_listener_serves_http():
    config = parse_config(["--listen", "8080,mode=http", "--http-max-body", "10"])
    assert config.mode == "echo"
    assert listener_configs(config)[0].http_max_body == 10


def test_tls_timeouts_are_allowed_when_only_a_listener_has_tls(certs):
    spec = f"8443,tls-cert={certs.server}"
    config = parse_config(["--listen", spec, "--tls-handshake-timeout", "2"])
    assert config.tls_cert is None
    assert listener_configs(config)[0].tls_handshake_timeout == 2.0


def test_the_flag_repeats_and_a_variable_holds_several_separated_by_spaces():
    assert parse_config(["--listen", "1", "--listen", "2"]).listen == ("1", "2")
    from_variable = parse_config([], {"GEVENTSRV_LISTEN": "1 2,mode=echo"})
    assert from_variable.listen == ("1", "2,mode=echo")
    # A flag replaces what the variable said, as every flag does.
    assert parse_config(["--listen", "3"], {"GEVENTSRV_LISTEN": "1 2"}).listen == ("3",)


def test_to_argv_writes_the_listeners_back():
    config = parse_config(["--listen", "1", "--listen", "2,mode=echo"])
    assert parse_config(to_argv(config)) == config


def test_with_workers_every_listener_needs_a_port_of_its_own():
    with pytest.raises(ConfigError, match="worker processes share a port"):
        Config(workers=2, listen=("0",)).validate()


@pytest.mark.parametrize(
    "spec, needle",
    [
        (",mode=echo", "a listener is [HOST:]PORT"),
        ("http", "a listener is [HOST:]PORT"),
        ("70000", "port from 0 to 65535"),
        ("80,colour=blue", "'colour=blue' is not a listener option"),
        ("80,tls-cert=", "'tls-cert=' is not a listener option"),
        ("80,mode=shout", "'80,mode=shout': mode must be one of"),
        ("80,proxy-protocol=v3", "'80,proxy-protocol=v3': proxy-protocol must be one of"),
        ("80,tls-key=/k.pem", "'80,tls-key=/k.pem': tls-key needs --tls-cert"),
        ("80,mode=http,udp", "'80,mode=http,udp': udp serves the echo and upper modes"),
        ("80,tls-cert=/no/such.pem", "'80,tls-cert=/no/such.pem'"),
    ],
)
def test_a_bad_listener_is_one_line_naming_it_and_exit_2(spec, needle):
    assert_one_line_error(run_cli("--port", "0", "--listen", spec), EXIT_USAGE, "--listen", needle)


def test_a_listener_on_a_port_in_use_fails_the_start_and_names_it():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", "0", "--listen", str(port))
    assert_one_line_error(result, 3, f"127.0.0.1:{port}")
