"""The flag table: to_argv() is the exact inverse of parse_config(); GEVENTSRV_* variables."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from support import ROOT

from geventsrv.config import Config
from geventsrv.flags import build_parser, parse_config, to_argv

#: A value other than the default for every field of Config. A field added to
#: Config without an entry here (and a flag in flags.py) fails the test below.
CHANGED = {
    "host": "::1",
    "port": 0,
    "mode": "upper",
    "listen": ("8080", "[::1]:8443,mode=echo,udp"),
    "backlog": 17,
    "max_conns": 33,
    "idle_timeout": 2.5,
    "drain_timeout": 0.25,
    "log_level": "debug",
    "tcp": False,
    "udp": True,
    "workers": 3,
    "reuse_port": True,
    "worker_id": 2,
    "io": "patched",
    "tls_cert": "/etc/geventsrv/cert.pem",
    "tls_key": "/etc/geventsrv/key.pem",
    "tls_ca": "/etc/geventsrv/ca.pem",
    "tls_handshake_timeout": 2.5,
    "tls_alpn": ("h2", "http/1.1"),
    "proxy_protocol": "v2",
    "proxy_allow_from": ("10.0.0.0/8", "fd00::/8"),
    "proxy_timeout": 0.5,
    "metrics": "[::1]:0",
    "metrics_socket": "/run/geventsrv/worker-2.sock",
    "shutdown_delay": 1.5,
    "log_format": "json",
    "access_log": True,
    "max_conns_per_client": 7,
    "ipv6_client_prefix": 56,
    "allow": ("10.0.0.0/8", "2001:db8::/32"),
    "deny": ("10.9.0.0/16",),
    "accept_rate_per_client": "5:10",
    "udp_rate_per_client": None,
    "http_max_body": 4096,
    "http_max_delay": 0.5,
    "http_header_timeout": 3.0,
    "ws_max_message": 4096,
    "grpc_max_message": 65536,
    "http_max_head": 4096,
    "http1_only": True,
    "http2_max_streams": 7,
    "http2_window": 65536,
    "http2_max_frame": 32768,
    "http_cors": "https://a.example,https://b.example",
    "http3": True,
    "http3_retry": True,
    "http3_max_datagram": 1452,
    "http3_alt_svc_port": 443,
}


#: What a field does nothing without, given with it (alone it is refused, see test_config).
NEEDS: dict[str, dict[str, object]] = {
    **{name: {"tls_cert": CHANGED["tls_cert"]}
       for name in ("tls_key", "tls_ca", "tls_handshake_timeout", "tls_alpn")},
    **{name: {"proxy_protocol": "v1"} for name in ("proxy_allow_from", "proxy_timeout")},
    **{name: {"mode": "http"}
       for name in ("http_max_body", "http_max_delay", "http_header_timeout", "ws_max_message",
                    "grpc_max_message", "http_max_head", "http1_only", "http2_max_streams",
                    "http2_window", "http2_max_frame", "http_cors")},
    "http3": {"mode": "http", "tls_cert": CHANGED["tls_cert"]},
    "http3_retry": {"mode": "http", "tls_cert": CHANGED["tls_cert"], "http3": True},
    "http3_max_datagram": {"mode": "http", "tls_cert": CHANGED["tls_cert"], "http3": True},
    "http3_alt_svc_port": {"mode": "http", "tls_cert": CHANGED["tls_cert"], "http3": True},
}  # fmt: skip


def test_every_field_has_a_changed_value_here():
    assert set(CHANGED) == {field.name for field in dataclasses.fields(Config)}


def test_defaults_round_trip():
    assert parse_config(to_argv(Config()), {}) == Config()


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_field_round_trips_alone(name):
    changes = {name: CHANGED[name]}
    if name == "tcp":
        changes["udp"] = True  # something must be served
    if name == "workers":
        changes["udp"] = False
    changes.update(NEEDS.get(name, {}))
    config = Config(**changes).validate()  # type: ignore[arg-type]
    assert parse_config(to_argv(config)) == config


def test_idle_timeout_none_round_trips_as_never():
    config = Config(idle_timeout=None)
    assert parse_config(to_argv(config)) == config


def test_all_fields_changed_at_once_round_trip():
    # TLS and the PROXY protocol need TCP, so TCP stays on beside UDP; the http mode's
    # settings need the http mode, which serves no UDP; one with UDP, without them.
    config = Config(**dict(CHANGED, workers=1, tcp=True, udp=False, mode="http")).validate()  # type: ignore[arg-type]
    assert parse_config(to_argv(config)) == config
    http_settings = set(NEEDS) - {name for name, need in NEEDS.items() if "mode" not in need}
    kept = {name: value for name, value in CHANGED.items() if name not in http_settings}
    config = Config(**dict(kept, workers=1, tcp=True)).validate()  # type: ignore[arg-type]
    assert parse_config(to_argv(config)) == config


@pytest.mark.parametrize("text", ["[::1]", "::1"])
def test_ipv6_hosts_with_or_without_brackets(text):
    assert parse_config(["--host", text]).host == "::1"


# -- the environment: GEVENTSRV_<FLAG> ------------------------------------------------


def test_every_flag_can_come_from_the_environment():
    environ = {
        "GEVENTSRV_PORT": "0",
        "GEVENTSRV_IDLE_TIMEOUT": "30",
        "GEVENTSRV_MODE": "upper",
        "GEVENTSRV_UDP": "yes",
        "GEVENTSRV_PROXY_PROTOCOL": "v1",
        "GEVENTSRV_PROXY_ALLOW_FROM": "10.0.0.0/8, 192.168.0.0/16",
        "GEVENTSRV_ACCESS_LOG": "1",
        "GEVENTSRV_LOG_FORMAT": "json",
    }
    config = parse_config([], environ)
    assert (config.port, config.idle_timeout, config.mode, config.udp) == (0, 30.0, "upper", True)
    assert config.proxy_allow_from == ("10.0.0.0/8", "192.168.0.0/16")
    assert config.access_log and config.log_format == "json"


def test_a_flag_beats_the_environment():
    environ = {"GEVENTSRV_PORT": "9000", "GEVENTSRV_ACCESS_LOG": "off"}
    config = parse_config(["--port", "9001"], environ)
    assert config.port == 9001 and not config.access_log


def test_every_option_has_its_variable():
    """The names are derived, so none can be forgotten: check one per option against --help."""
    parser = build_parser()
    names = {
        "GEVENTSRV_" + action.dest.upper()
        for action in parser._actions
        if action.option_strings and action.dest not in ("help", "version")
    }
    assert {"GEVENTSRV_MAX_CONNS", "GEVENTSRV_TLS_CERT", "GEVENTSRV_SHUTDOWN_DELAY"} <= names


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("GEVENTSRV_PORT", "70000", "GEVENTSRV_PORT: must be a whole number from 0 to 65535"),
        ("GEVENTSRV_PORT", "x", "GEVENTSRV_PORT: must be a whole number, got 'x'"),
        ("GEVENTSRV_MODE", "shout", "GEVENTSRV_MODE: must be one of echo, upper, info, http, chat"),
        ("GEVENTSRV_UDP", "maybe", "GEVENTSRV_UDP: takes 1/true/yes/on or 0/false/no/off"),
        ("GEVENTSRV_IDLE_TIMEOUT", "soon", "GEVENTSRV_IDLE_TIMEOUT: must be a number of seconds"),
        ("GEVENTSRV_TLS_CERT", "/no/such.pem", "GEVENTSRV_TLS_CERT: cannot read /no/such.pem"),
        ("GEVENTSRV_HTTP_MAX_BODY", "10", "GEVENTSRV_HTTP_MAX_BODY: applies to --mode http only"),
    ],
)
def test_a_bad_variable_is_named_in_one_line_and_exit_2(variable, value, needle):
    result = run_with_environment({variable: value})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr


def run_with_environment(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geventsrv"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
        env=dict(os.environ, **variables),
    )


@pytest.mark.parametrize(
    ("variable", "said"),
    [
        ("GEVENTSRV_MAX_CONN", "GEVENTSRV_MAX_CONN is not a setting, ignored; did you mean "
         "GEVENTSRV_MAX_CONNS?"),
        ("GEVENTSRV_IDLETIMEOUT", "did you mean GEVENTSRV_IDLE_TIMEOUT?"),
        ("GEVENTSRV_WHATEVER", "GEVENTSRV_WHATEVER is not a setting, ignored (see --help)"),
    ],
)  # fmt: skip
def test_a_misspelt_variable_is_warned_of_naming_the_closest_setting(variable, said):
    result = run_with_environment({variable: "5", "GEVENTSRV_PORT": "70000"})
    assert result.returncode == 2  # (the bad port ends the run once the warning is out)
    lines = result.stderr.splitlines()
    assert lines[0] == f"geventsrv: warning: {said}" or said in lines[0], lines
    assert len(lines) == 2 and "GEVENTSRV_PORT" in lines[1]


def test_variables_the_other_commands_read_are_not_warned_of():
    environ = {"GEVENTSRV_LANG": "zh", "GEVENTSRV_CLUSTER_SIZE": "1", "GEVENTSRV_PORT": "70000"}
    result = run_with_environment(environ)
    assert result.returncode == 2 and "warning" not in result.stderr


def test_variables_of_flags_that_exclude_each_other_are_refused_together():
    """``--udp --udp-only`` is an error; so is setting both their variables."""
    result = run_with_environment({"GEVENTSRV_UDP": "1", "GEVENTSRV_UDP_ONLY": "1"})
    assert result.returncode == 2, result.stderr
    assert "GEVENTSRV_UDP and GEVENTSRV_UDP_ONLY: not allowed together" in result.stderr


def test_readme_documents_every_flag_in_its_table_and_synopsis():
    import argparse
    import re

    readme = (ROOT / "README.md").read_text()
    table = {flag for pair in re.findall(r"^\| `(--[a-z0-9-]+)`(?:, `(--[a-z0-9-]+)`)?", readme,
                                         re.M) for flag in pair if flag}  # fmt: skip
    synopsis = readme.split("python3 -m geventsrv [", 1)[1].split("```", 1)[0]
    for action in build_parser()._actions:
        if action.help == argparse.SUPPRESS or action.dest in ("help", "version"):
            continue
        flag = action.option_strings[0]
        assert flag in table, f"{flag} is missing from README's flag table"
        assert flag in synopsis, f"{flag} is missing from README's command line"
