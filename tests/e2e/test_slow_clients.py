"""Slow and idle clients cannot starve a real proxy's control port (slowloris): with 300
connections open, each sending one byte of an unfinished request every second, health checks and
StopExperiment are answered at once, and the unfinished requests are cut at the head deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.conftest import Fisproxy, wait_for_state

SLOW_CONNECTIONS = 300  # past both caps: 256 in all, 64 from one address
HEAD_TIMEOUT = 10.0  # controlserver.Limits.head_timeout


class Slowloris:
    """Connections that each send a byte of an unfinished request head every second."""

    def __init__(self, port: int, count: int) -> None:
        self.socks: list[socket.socket] = []
        self.answers: dict[int, bytes] = {}
        self.opened: list[float] = []
        self.closed_at: dict[int, float] = {}  # seconds after it was opened
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /_fisproxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            self.socks.append(sock)
            self.opened.append(time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_sent = time.monotonic()
        while not self._stop.wait(0.25):  # closes are seen within a quarter of a second
            send = time.monotonic() - last_sent >= 1.0
            if send:
                last_sent = time.monotonic()
            for i, sock in enumerate(self.socks):
                if i not in self.closed_at and not self._poll(i, sock, send):
                    self.closed_at[i] = time.monotonic() - self.opened[i]

    def _poll(self, i: int, sock: socket.socket, send: bool) -> bool:
        """Read what the server sent, send a byte if it is time: False once it closed."""
        try:
            data = sock.recv(65536)
            if not data:
                return False
            self.answers[i] = self.answers.get(i, b"") + data
        except BlockingIOError:
            pass
        except OSError:
            return False
        if send:
            try:
                sock.send(b"a")
            except BlockingIOError:
                pass
            except OSError:
                return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.socks:
            sock.close()


@pytest.fixture
def slow_target(tmp_path_factory: pytest.TempPathFactory, moto: str) -> Iterator[Fisproxy]:
    with Fisproxy(tmp_path_factory.mktemp("fisproxy-slow"), moto).running() as proxy:
        yield proxy


def test_slow_clients_do_not_starve_health_or_stop(slow_target: Fisproxy) -> None:
    proxy = slow_target
    fis = proxy.fis()
    template = fis.create_experiment_template(
        description="slowloris", roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}],
        actions={"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT10M"}}},
    )["experimentTemplate"]
    exp_id = fis.start_experiment(experimentTemplateId=template["id"])["experiment"]["id"]
    wait_for_state(fis, exp_id, "running")

    attack = Slowloris(proxy.control_port, SLOW_CONNECTIONS)
    try:
        times = []
        deadline = time.monotonic() + HEAD_TIMEOUT + 3
        while time.monotonic() < deadline:
            began = time.monotonic()
            health = requests.get(f"{proxy.control_url}/_fisproxy/health", timeout=5,
                                  proxies={"http": None, "https": None})
            times.append(time.monotonic() - began)
            assert health.status_code == 200, health.text
            time.sleep(0.5)
        began = time.monotonic()
        stopped = fis.stop_experiment(id=exp_id)["experiment"]
        stop_took = time.monotonic() - began
        assert stopped["state"]["status"] in ("stopping", "stopped")
        wait_for_state(fis, exp_id, "stopped")
        print(f"\n[slowloris] {SLOW_CONNECTIONS} slow connections: {len(times)} health checks, "
              f"slowest {max(times) * 1000:.0f} ms; StopExperiment {stop_took * 1000:.0f} ms; "
              f"{len(attack.closed_at)} slow connections closed, the last after "
              f"{max(attack.closed_at.values()):.1f} s")
        # Every unfinished request was cut: made room for others, or at the head deadline
        # (with a 408) however often it sent a byte.
        assert len(attack.closed_at) == SLOW_CONNECTIONS
        assert max(attack.closed_at.values()) < HEAD_TIMEOUT + 2
        timed_out = [a for a in attack.answers.values() if a.startswith(b"HTTP/1.1 408")]
        assert timed_out, "no unfinished request was cut at the head deadline"
    finally:
        attack.close()
