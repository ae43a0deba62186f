"""Placement from the platform: the ECS task metadata and EC2's IMDSv2, served by small real
HTTP servers standing in for the metadata endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fisproxy.fis.proxyfaults import Placement
from fisproxy.placement import discover

IMDS = {
    "/latest/meta-data/placement/availability-zone": "eu-west-1b",
    "/latest/meta-data/placement/availability-zone-id": "euw1-az3",
    "/latest/meta-data/mac": "0a:1b:2c:3d:4e:5f",
    "/latest/meta-data/network/interfaces/macs/0a:1b:2c:3d:4e:5f/subnet-id": "subnet-0f00",
}


class Metadata(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self._answer(200 if ok else 400, "TOKEN")

    def do_GET(self) -> None:
        if self.path == "/v4/abc/task":
            self._answer(200, json.dumps({"AvailabilityZone": "us-west-2c", "Cluster": "c"}))
        elif self.headers.get("X-aws-ec2-metadata-token") != "TOKEN":
            self._answer(401, "")  # IMDSv2 only
        else:
            self._answer(200 if self.path in IMDS else 404, IMDS.get(self.path, ""))

    def _answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.fixture
def metadata() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ecs_tasks_are_placed_by_their_task_metadata(metadata: str) -> None:
    assert discover({"ECS_CONTAINER_METADATA_URI_V4": f"{metadata}/v4/abc"}) == Placement(az="us-west-2c")


def test_ec2_instances_are_placed_by_imdsv2(metadata: str) -> None:
    assert discover({"AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata}) == Placement(
        az="eu-west-1b", az_id="euw1-az3", subnet="subnet-0f00")


def test_no_platform_means_no_placement(metadata: str) -> None:
    assert discover({"AWS_EC2_METADATA_DISABLED": "true"}) == Placement()
    assert discover({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"}) == Placement()
