"""gRPC server reflection: the shipped descriptors are what protoc makes of the shipped
``echo.proto`` (and gRPC's health.proto), and grpcio-reflection's own client finds every
service, symbol and file through them; ``v1`` answers as ``v1alpha`` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import CLIENT_TIMEOUT

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_tools")
health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
database = pytest.importorskip("grpc_reflection.v1alpha.proto_reflection_descriptor_database")
reflection_pb2 = pytest.importorskip("grpc_reflection.v1alpha.reflection_pb2")

import geventsrv.http  # noqa: E402  (after the skips)
from geventsrv.http.grpcreflection import SERVICES  # noqa: E402

PACKAGE = Path(geventsrv.http.__file__).parent
ROOT = PACKAGE.parent.parent


def made_descriptors(tmp_path: Path) -> bytes:
    """A FileDescriptorSet as protoc makes it of ``echo.proto``, with health.proto's."""
    out = tmp_path / "echo.binpb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}",
                    f"--descriptor_set_out={out}", "geventsrv/http/echo.proto"],
                   check=True, timeout=60)  # fmt: skip
    made = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    made.file.append(
        descriptor_pb2.FileDescriptorProto.FromString(health_pb2.DESCRIPTOR.serialized_pb)
    )
    return made.SerializeToString(deterministic=True)


def test_the_shipped_descriptors_are_the_proto_files(tmp_path):
    shipped = (PACKAGE / "grpc_descriptors.binpb").read_bytes()
    assert shipped == made_descriptors(tmp_path), (
        "echo.proto changed: write made_descriptors()'s bytes (tests/test_http_grpcreflection.py) "
        "to geventsrv/http/grpc_descriptors.binpb"
    )


@pytest.fixture
def reflected(start_server):
    server = start_server("--mode", "http")
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel, database.ProtoReflectionDescriptorDatabase(channel)


def test_grpcio_reflection_lists_and_finds_every_service_and_symbol(reflected):
    _, found = reflected
    assert sorted(found.get_services()) == sorted(SERVICES)
    echo = found.FindFileContainingSymbol("geventsrv.echo.v1.Echo")
    assert echo.name == "geventsrv/http/echo.proto" and echo.package == "geventsrv.echo.v1"
    assert [m.name for m in echo.service[0].method] == [
        "Unary", "ServerStream", "ClientStream", "Bidi", "Reflect"
    ]  # fmt: skip
    for symbol in ("geventsrv.echo.v1.Echo.Bidi", "geventsrv.echo.v1.EchoMessages",
                   "grpc.health.v1.HealthCheckResponse.ServingStatus",
                   "grpc.health.v1.Health.Watch"):  # fmt: skip
        assert found.FindFileContainingSymbol(symbol).name.endswith(".proto")
    assert found.FindFileByName("grpc_health/v1/health.proto").package == "grpc.health.v1"
    with pytest.raises(KeyError):
        found.FindFileContainingSymbol("no.such.Thing")


def test_v1_answers_what_v1alpha_does(reflected):
    """The two versions' messages are the same on the wire: v1alpha's stub, v1's path."""
    channel, _ = reflected
    answers = {}
    for version in ("v1", "v1alpha"):
        method = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest
        asked = [request(list_services=""), request(file_by_filename="nothing.proto")]
        answers[version] = list(method(iter(asked), timeout=CLIENT_TIMEOUT))
    assert answers["v1"] == answers["v1alpha"]
    listed, missing = answers["v1"]
    assert [s.name for s in listed.list_services_response.service] == list(SERVICES)
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
