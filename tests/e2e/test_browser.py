"""No web page but fisproxy's own can drive a real proxy's control API.

Headless Chromium loads an attacker's page from `http://evil.test:<port>/` (the name mapped to
127.0.0.1 with `--host-resolver-rules`) that tries what a page can: cross-origin POSTs a browser
sends without asking (text/plain and form bodies through fetch, a text/plain form whose fields
spell a template), a JSON POST and a read across origins, and DNS rebinding: once the page is
loaded its server starts relaying to the control port, as if evil.test now resolved to it, and
the page reads and writes same-origin. Nothing is read, nothing is created. The exact requests
browsers send are also replayed without a browser (CSRF and rebinding, on the control port and
for fis.<region>.amazonaws.com through the proxy), next to what the tools send, served as
before."""

from __future__ import annotations

import json
import shutil
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Fisproxy
from tests.helpers import clean_env, free_port, run_group

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TEMPLATE = {"roleArn": "arn:aws:iam::123456789012:role/fis", "stopConditions": [{"source": "none"}],
            "actions": {"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}}}

PAGE = """<!doctype html><html><body><pre id="out">running</pre>
<iframe name="sink" style="display:none"></iframe>
<form id="form" method="POST" enctype="text/plain" target="sink" action="CONTROL/experimentTemplates">
<input id="field" name="" value=""></form>
<script>
const control = "CONTROL";
const template = TEMPLATE;
const out = {};
async function attempt(name, f) {
  try { out[name] = await f(); } catch (e) { out[name] = "refused by the browser: " + e.name; }
}
async function text(r) { return r.status + " " + (await r.text()).slice(0, 300); }
(async () => {
  await attempt("csrf text/plain", async () => (await fetch(control + "/experimentTemplates", {
    method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({...template, description: "csrf text/plain"})})).type);
  await attempt("csrf form-urlencoded", async () => (await fetch(control + "/experimentTemplates", {
    method: "POST", mode: "no-cors", headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: JSON.stringify({...template, description: "csrf form"})})).type);
  await attempt("csrf blob", async () => (await fetch(control + "/experimentTemplates", {
    method: "POST", mode: "no-cors", body: new Blob([JSON.stringify({...template, description: "csrf blob"})])})).type);
  await attempt("cross-origin json", async () => text(await fetch(control + "/experimentTemplates", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({...template, description: "cross-origin json"})})));
  await attempt("cross-origin read", async () => text(await fetch(control + "/experimentTemplates")));
  // A text/plain form sends `name=value`: name and value chosen to spell a template whose
  // description ends with the "=".
  const body = JSON.stringify({...template, description: "csrf html form~"});
  const cut = body.indexOf("~");
  document.getElementById("field").name = body.slice(0, cut);  // {...,"description":"csrf html form
  document.getElementById("field").value = body.slice(cut + 1);  // "}
  document.getElementById("form").submit();
  await new Promise(r => setTimeout(r, 1500));
  // DNS rebinding: from now on this page's own name reaches the control port.
  await fetch("/rebind", {cache: "no-store"});
  await attempt("rebound read", async () => text(await fetch("/experimentTemplates", {cache: "no-store"})));
  await attempt("rebound health", async () => text(await fetch("/_fisproxy/health", {cache: "no-store"})));
  await attempt("rebound write", async () => text(await fetch("/experimentTemplates", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({...template, description: "rebound write"})})));
  document.getElementById("out").textContent = "RESULT " + JSON.stringify(out);
})();
</script></body></html>"""


class EvilServer(socketserver.ThreadingTCPServer):
    """The attacker's server for evil.test: serves the page until `/rebind`, then relays every
    new request to the control port unchanged, as a rebound DNS name would send it there."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, control_port: int, page: bytes) -> None:
        self.control_port = control_port
        self.page = page
        self.rebound = False
        super().__init__(("127.0.0.1", port), Relay)


class Relay(socketserver.BaseRequestHandler):
    server: EvilServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                return
            head += chunk
        if self.server.rebound:  # decided per request, when it arrives
            with socket.create_connection(("127.0.0.1", self.server.control_port), timeout=10) as up:
                up.sendall(head)
                pipe = threading.Thread(target=_copy, args=(up, sock), daemon=True)
                pipe.start()
                _copy(sock, up)
                pipe.join(10)
            return
        if head.startswith(b"GET /rebind "):
            self.server.rebound = True
            sock.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        elif head.startswith(b"GET / "):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: no-store\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(self.server.page) + self.server.page)
        else:
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, moto: str) -> Iterator[Fisproxy]:
    """A proxy of its own, so its template list holds only this module's."""
    with Fisproxy(tmp_path_factory.mktemp("fisproxy-browser"), moto).running() as proxy:
        yield proxy


def descriptions(proxy: Fisproxy) -> set[str]:
    return {t["description"] for t in proxy.fis().list_experiment_templates()["experimentTemplates"]}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it with apt)")
def test_a_foreign_page_in_chromium_cannot_read_or_write(target: Fisproxy, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    target.fis().create_experiment_template(description="a secret template", **TEMPLATE)
    control = f"http://127.0.0.1:{target.control_port}"
    page = PAGE.replace("CONTROL", control).replace("TEMPLATE", json.dumps(TEMPLATE)).encode()
    port = free_port()
    evil = EvilServer(port, target.control_port, page)
    serving = threading.Thread(target=evil.serve_forever, daemon=True)
    serving.start()
    try:
        result = run_group(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}",
             "--host-resolver-rules=MAP evil.test 127.0.0.1", "--virtual-time-budget=60000",
             "--dump-dom", f"http://evil.test:{port}/"],
            timeout=180, env=clean_env())
    finally:
        evil.shutdown()
        evil.server_close()
    dom = result.stdout.decode(errors="replace")
    assert "RESULT " in dom, (dom[-2000:], result.stderr.decode(errors="replace")[-3000:])
    out = json.loads(dom.split("RESULT ", 1)[1].split("</pre>", 1)[0].replace("&amp;", "&")
                     .replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"'))
    print("\n[browser] " + "\n[browser] ".join(f"{k}: {v[:160]}" for k, v in out.items()))
    print(f"[browser] templates afterwards: {sorted(descriptions(target))}")
    # Writes: nothing was created, whatever the browser sent.
    assert descriptions(target) == {"a secret template"}
    # Reads: across origins the browser refuses (no CORS header); after rebinding fisproxy does.
    assert out["cross-origin read"].startswith("refused by the browser")
    assert out["cross-origin json"].startswith("refused by the browser")  # preflight never granted
    for name in ("rebound read", "rebound health", "rebound write"):
        assert out[name].startswith("403 ") and "does not answer to the name" in out[name], out[name]
        assert "a secret template" not in out[name]


# ---- the exact requests, without a browser ------------------------------------------------------

def send(proxy: Fisproxy, method: str, path: str, headers: dict[str, str], body: str = "") -> requests.Response:
    return requests.request(method, f"{proxy.control_url}{path}", headers=headers, data=body.encode(),
                            timeout=10, proxies={"http": None, "https": None})


def chrome(origin: str, site: str, **more: str) -> dict[str, str]:
    """The headers Chrome adds to a page's fetch."""
    return {"Origin": origin, "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty",
            "User-Agent": "Mozilla/5.0 Chrome/120.0.0.0", **more}


def test_csrf_requests_are_refused_and_change_nothing(target: Fisproxy) -> None:
    before = descriptions(target)
    body = json.dumps({**TEMPLATE, "description": "csrf"})
    for headers, status in [
        (chrome("http://evil.example", "cross-site", **{"Content-Type": "text/plain;charset=UTF-8"}), 403),
        (chrome("http://localhost:3000", "same-site", **{"Content-Type": "application/x-www-form-urlencoded"}), 403),
        ({"Content-Type": "text/plain"}, 415),  # no Origin (a browser that sends none): still not JSON
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({"Content-Type": "application/json, text/plain"}, 415),
    ]:
        answer = send(target, "POST", "/experimentTemplates", headers, body)
        assert answer.status_code == status, (headers, answer.text)
        assert answer.headers["x-amzn-ErrorType"] in ("AccessDeniedException", "UnsupportedMediaTypeException")
    answer = send(target, "POST", "/_localstack/chaos/faults", {"Content-Type": "text/plain"}, "[{}]")
    assert answer.status_code == 415
    assert descriptions(target) == before
    assert target.control("GET", "/_localstack/chaos/faults").json() == []


def test_dns_rebinding_requests_are_refused(target: Fisproxy) -> None:
    evil = f"evil.example:{target.control_port}"
    for method, path, headers, body in [
        ("GET", "/experimentTemplates", {"Host": evil}, ""),
        ("GET", "/_fisproxy/health", {"Host": evil}, ""),
        ("GET", "/metrics", {"Host": evil}, ""),
        ("POST", "/experimentTemplates", {"Host": evil, **chrome(f"http://{evil}", "same-origin"),
                                          "Content-Type": "application/json"},
         json.dumps({**TEMPLATE, "description": "rebound"})),
    ]:
        answer = send(target, method, path, headers, body)
        assert answer.status_code == 403 and "--allowed-host" in answer.json()["message"], answer.text
    assert "rebound" not in descriptions(target)


def test_what_tools_send_is_served(target: Fisproxy) -> None:
    """curl with a JSON type, the console's own same-origin POST, a link followed from elsewhere."""
    body = json.dumps({**TEMPLATE, "description": "from curl"})
    made = send(target, "POST", "/experimentTemplates", {"Content-Type": "application/json"}, body)
    assert made.status_code == 200, made.text
    own = chrome(target.control_url, "same-origin", **{"Content-Type": "application/json"})
    assert send(target, "POST", "/experimentTemplates", own,
                json.dumps({**TEMPLATE, "description": "from the console"})).status_code == 200
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert send(target, "GET", "/experimentTemplates", link).status_code == 200
    assert send(target, "GET", "/_fisproxy/health", {"Host": f"localhost:{target.control_port}"}).status_code == 200
    assert {"from curl", "from the console"} <= descriptions(target)


def test_the_fis_api_through_the_proxy_refuses_pages_of_other_sites(target: Fisproxy) -> None:
    """A browser that uses fisproxy as its proxy: a page on another site posting to
    https://fis.us-east-1.amazonaws.com (TLS intercepted, answered by fisproxy)."""
    url = "https://fis.us-east-1.amazonaws.com/experimentTemplates"
    kw: dict[str, Any] = {"proxies": {"https": target.proxy_url, "http": target.proxy_url},
                          "verify": target.ca, "timeout": 10}
    body = json.dumps({**TEMPLATE, "description": "through the proxy"}).encode()
    forged = requests.post(url, data=body, headers=chrome("https://evil.example", "cross-site",
                                                          **{"Content-Type": "text/plain"}), **kw)
    assert forged.status_code == 403 and forged.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert requests.post(url, data=body, headers={"Content-Type": "text/plain"}, **kw).status_code == 415
    assert "through the proxy" not in descriptions(target)
    # boto3 through the proxy, unchanged
    fis = target.client("fis")
    made = fis.create_experiment_template(description="boto3 through the proxy", **TEMPLATE)
    assert made["experimentTemplate"]["description"] == "boto3 through the proxy"
