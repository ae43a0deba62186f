"""mitmproxy's own options keep working under `fisproxy run`, whose master drops the addons nothing
uses: each option below belongs to an addon fisproxy drops by default, and is checked by what it
does to real requests through the real proxy (an HTTP echo server as the upstream)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from mitmproxy import http
from mitmproxy import io as mitmio

from tests.e2e.conftest import Fisproxy
from tests.helpers import VENV_BIN, clean_env, free_port, start_process, stop

SCRIPT = '''
from mitmproxy import http

def request(flow: http.HTTPFlow) -> None:
    flow.request.headers["x-from-script"] = "yes"
'''


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received, as JSON; /setcookie also sets a cookie."""

    seen: list[str] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        Echo.seen.append(self.path)
        payload = json.dumps({"path": self.path, "headers": dict(self.headers), "body": body}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        if self.path == "/setcookie":
            self.send_header("set-cookie", "session=abc; Path=/")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(proxy: str, url: str, **kw: Any) -> requests.Response:
    return requests.request(kw.pop("method", "GET"), url, proxies={"http": proxy}, timeout=10, **kw)


@pytest.fixture(scope="module")
def optioned(tmp_path_factory: pytest.TempPathFactory, echo: str) -> Iterator[tuple[Fisproxy, Path]]:
    work = tmp_path_factory.mktemp("optioned")
    (work / "local").mkdir()
    (work / "local" / "file.txt").write_text("served from a local file")
    (work / "script.py").write_text(SCRIPT)
    sets = [
        "proxyauth=user:secret",
        "modify_headers=/~q/x-added/yes",
        "map_remote=|/old/|/new/",
        f"map_local=|/local/|{work / 'local'}",
        "modify_body=/~q/hello/HELLO",
        "block_list=/~u blocked/418",
        "anticache=true",
        "anticomp=true",
        "stickycookie=.*",
        f"save_stream_file={work / 'flows.mitm'}",
        f"scripts={work / 'script.py'}",
    ]
    args = [a for s in sets for a in ("--set", s)]
    proxy = Fisproxy(work, echo, extra_args=tuple(args))
    with proxy.running():
        yield proxy, work


def authed(proxy: Fisproxy) -> str:
    return f"http://user:secret@127.0.0.1:{proxy.port}"


def test_proxyauth_refuses_without_credentials_and_passes_with(optioned: tuple[Fisproxy, Path], echo: str) -> None:
    proxy, _ = optioned
    assert get(proxy.proxy_url, f"{echo}/x").status_code == 407
    assert get(authed(proxy), f"{echo}/x").status_code == 200


def test_each_dropped_addons_option_still_acts(optioned: tuple[Fisproxy, Path], echo: str) -> None:
    proxy, work = optioned
    via = authed(proxy)
    seen = get(via, f"{echo}/plain", headers={"if-none-match": "x", "accept-encoding": "gzip"}).json()
    assert seen["headers"]["x-added"] == "yes"                    # modify_headers
    assert seen["headers"]["x-from-script"] == "yes"              # scripts
    assert "if-none-match" not in {k.lower() for k in seen["headers"]}  # anticache
    lower = {k.lower(): v for k, v in seen["headers"].items()}
    assert lower["accept-encoding"] == "identity"                 # anticomp
    assert get(via, f"{echo}/old/page").json()["path"] == "/new/page"  # map_remote
    assert get(via, f"{echo}/local/file.txt").text == "served from a local file"  # map_local
    assert get(via, f"{echo}/b", method="POST", data="hello").json()["body"] == "HELLO"  # modify_body
    assert get(via, f"{echo}/blocked").status_code == 418         # block_list
    get(via, f"{echo}/setcookie")
    after = {k.lower(): v for k, v in get(via, f"{echo}/after").json()["headers"].items()}
    assert after.get("cookie") == "session=abc"                   # stickycookie


def test_save_stream_file_writes_flows_while_running(optioned: tuple[Fisproxy, Path], echo: str) -> None:
    proxy, work = optioned
    get(authed(proxy), f"{echo}/saved")
    assert (work / "flows.mitm").stat().st_size > 0               # save_stream_file


def test_saved_flows_name_the_aws_host_the_client_called(tmp_path: Path, echo: str) -> None:
    """The echo server is the --aws-endpoint: the call goes there, the saved flow names the host
    the client called."""
    saved = tmp_path / "flows.mitm"
    proxy = Fisproxy(tmp_path, echo, extra_args=("--set", f"save_stream_file={saved}"))
    with proxy.running():
        answer = get(proxy.proxy_url, "http://sqs.us-east-1.amazonaws.com/saved-aws-call")
        assert answer.json()["path"] == "/saved-aws-call"  # answered by the endpoint
    with saved.open("rb") as f:  # complete once the proxy has stopped
        urls = [fl.request.url for fl in mitmio.FlowReader(f).stream() if isinstance(fl, http.HTTPFlow)]
    assert urls == ["http://sqs.us-east-1.amazonaws.com/saved-aws-call"]


def test_hardump_is_written_when_the_proxy_stops(tmp_path: Path, echo: str) -> None:
    proxy = Fisproxy(tmp_path, echo, extra_args=("--set", f"hardump={tmp_path / 'out.har'}"))
    with proxy.running():
        get(proxy.proxy_url, f"{echo}/for-the-har")
    har = json.loads((tmp_path / "out.har").read_text())
    assert any(e["request"]["url"].endswith("/for-the-har") for e in har["log"]["entries"])


def test_upstream_mode_with_upstream_auth_goes_through_the_other_proxy(tmp_path: Path, echo: str) -> None:
    """fisproxy chained to a bare mitmdump that wants proxy credentials: fisproxy's
    `upstream_auth` (a dropped addon) supplies them, and the upstream proxy adds a header."""
    port = free_port()
    upstream = start_process(
        [str(VENV_BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"confdir={tmp_path / 'up'}", "--set", "proxyauth=up:pass",
         "--set", "modify_headers=/~q/x-via-upstream/1"],
        tmp_path / "mitmdump.log", lambda: _listening(port), "mitmdump", env=clean_env())
    try:
        proxy = Fisproxy(mkdir(tmp_path / "fp"), echo, extra_args=(
            "--set", f"mode=upstream:http://127.0.0.1:{port}", "--set", "upstream_auth=up:pass"))
        with proxy.running():
            seen = get(proxy.proxy_url, f"{echo}/chained").json()
        assert seen["headers"]["x-via-upstream"] == "1"
    finally:
        stop(upstream)


def test_server_replay_answers_from_saved_flows(echo: str, tmp_path: Path) -> None:
    saved = tmp_path / "saved.mitm"
    recording = Fisproxy(mkdir(tmp_path / "rec"), echo, extra_args=("--set", f"save_stream_file={saved}"))
    with recording.running():
        get(recording.proxy_url, f"{echo}/replay-me")
    replaying = Fisproxy(mkdir(tmp_path / "fp"), echo, extra_args=("--set", f"server_replay={saved}",
                                                                  "--set", "server_replay_reuse=true"))
    with replaying.running():
        before = len(Echo.seen)
        answer = get(replaying.proxy_url, f"{echo}/replay-me")
        assert answer.json()["path"] == "/replay-me"
        assert len(Echo.seen) == before  # answered from the file: the echo server saw nothing


def test_an_unknown_option_is_an_error_naming_the_closest(tmp_path: Path, echo: str) -> None:
    out = subprocess.run(
        [*Fisproxy(tmp_path, echo).command(), "--set", "fisproxy_qiuet=true"],
        capture_output=True, text=True, timeout=60, env=clean_env())
    assert out.returncode == 2
    assert "unknown mitmproxy option: fisproxy_qiuet (did you mean fisproxy_quiet?)" in out.stderr


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
