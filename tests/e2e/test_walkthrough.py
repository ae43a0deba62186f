"""The README's five-minute walkthrough, pasted into shells as a user would, while another
fisproxy (with its own moto) runs on the same host, started later: every command reaches the
walkthrough's proxy and moto, never the other one. Then `Ctrl-C` and `kill %1` stop it all, and
`fisproxy experiments` in the folder reads the state file the stopped proxy used.

What is not run as written: the `pip install` line (the suite's venv has the packages; the
folder's `.venv` is a link to it), `make run` (run as the Makefile's `run` recipe says, not
through make, which would manage the linked venv), and the ports: moto's 5000 and the proxy's
8080/8082 are free ports here. The AWS CLI and boto3 run with AWS_MAX_ATTEMPTS=1: the real
back-off the README describes is tests/e2e/test_env.py's and tests/test_readme_walkthrough.py's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.e2e.conftest import Fisproxy
from tests.helpers import VENV_BIN, clean_env, free_port, http_ok, start_moto, stop, wait_until

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Five minutes"):text.index("## Trusting the CA")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def make_run_recipe() -> str:
    """The command `make run` runs, from the Makefile (its venv is `.venv`)."""
    [recipe] = re.findall(r"^run:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    return recipe.replace("$(BIN)", ".venv/bin")


def first_shell(block: str, moto_port: int, port: int, control_port: int) -> str:
    lines = []
    for line in block.splitlines():
        if line.startswith("python3 -m venv"):
            continue  # installed already
        make_run = re.match(r'make run ARGS="([^"]*)"', line)
        if make_run:
            args = f"{make_run[1]} --port {port} --control-port {control_port}"
            line = make_run_recipe().replace("$(ARGS)", args)
        lines.append(line.replace(":5000", f":{moto_port}").replace("-p 5000", f"-p {moto_port}"))
    script = "\n".join(lines)
    assert f"-p {moto_port}" in script and f"--port {port}" in script, script
    return script


def moto_tables(url: str) -> list[str]:
    ddb = boto3.session.Session().client("dynamodb", region_name="us-east-1", endpoint_url=url,
                                         aws_access_key_id="testing", aws_secret_access_key="testing",
                                         config=Config(proxies={}))
    tables: list[str] = ddb.list_tables()["TableNames"]
    return tables


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_readme_walkthrough_reaches_its_proxy_while_another_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = walkthrough()
    assert "kill %1" in blocks[-1]
    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    clone.mkdir()
    elsewhere.mkdir()
    (clone / ".venv").symlink_to(VENV_BIN.parent)
    run_dir = str(tmp_path / "run")  # the runtime files of this host, for both proxies
    moto_port, port, control_port = free_port(), free_port(), free_port()
    script = first_shell(blocks[0], moto_port, port, control_port) + "\n" + blocks[-1]
    log = tmp_path / "first-shell.log"
    with log.open("wb") as out:
        first = subprocess.Popen(["bash", "-c", script], cwd=clone, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=clean_env(FISPROXY_RUNTIME_DIR=run_dir))
    stranger_moto = None
    stranger = Fisproxy(elsewhere, "", env_extra={"FISPROXY_RUNTIME_DIR": run_dir})
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{control_port}/_fisproxy/health"), 90,
                   "the walkthrough's proxy", first)
        # another fisproxy, with its own moto, started later: the newest on this host
        stranger_moto, stranger_url = start_moto(tmp_path / "stranger-moto.log")
        stranger.upstream = stranger_url
        monkeypatch.chdir(elsewhere)
        stranger.start()

        second = "\n".join(blocks[1:-1]).replace("fisproxy env --port 8080", f"fisproxy env --port {port}")
        assert f"--port {port}" in second
        env = clean_env(FISPROXY_RUNTIME_DIR=run_dir, AWS_MAX_ATTEMPTS="1")
        result = subprocess.run(["bash", "-c", second], cwd=clone, capture_output=True, text=True,
                                timeout=300, env=env)
        [record] = [json.loads(p.read_text()) for p in Path(run_dir).glob(f"proxy-{port}-*.json")]
        assert record["folder"] == str(clone.resolve())
        assert f"fisproxy env: the fisproxy on port {port} (pid {record['pid']}), as --port {port} says" \
               in result.stderr, result.stderr
        assert "ThrottlingException" in result.stderr, result.stderr  # aws dynamodb put-item
        assert "ThrottlingException 0" in result.stdout and "/throttle/error" in result.stdout, result.stdout
        assert re.search(r"dynamodb\s+PutItem\s+2\s+2\s+2\s", result.stdout), result.stdout  # the report
        assert "demo" in moto_tables(f"http://127.0.0.1:{moto_port}")
        assert "demo" not in moto_tables(stranger_url)
        assert stranger.fis().list_experiments()["experiments"] == []

        # unpinned, from the clone: the proxy of this folder, not the newer stranger
        unpinned = subprocess.run(["bash", "-c", f'eval "$({VENV_BIN / "fisproxy"} env)"; echo "$HTTPS_PROXY"'],
                                  cwd=clone, capture_output=True, text=True, timeout=60, env=env)
        assert unpinned.stdout == f"http://127.0.0.1:{port}\n"
        assert f"started in {clone.resolve()}" in unpinned.stderr

        # Ctrl-C stops the proxy; then the first shell's `kill %1` stops moto
        os.kill(record["pid"], signal.SIGINT)
        first.wait(60)
        assert first.returncode == 0, log.read_text()
        wait_until(lambda: not group_alive(first.pid), 30, "moto stopped by kill %1")

        after = subprocess.run([str(VENV_BIN / "fisproxy"), "experiments"], cwd=clone, capture_output=True,
                               text=True, timeout=60,
                               env=clean_env(FISPROXY_RUNTIME_DIR=run_dir,
                                             AWS_ENDPOINT_URL_FIS=f"http://127.0.0.1:{control_port}"))
        assert after.returncode == 0 and "stopped" in after.stdout, after.stderr
        assert f"reading the state file {(clone / 'state' / 'fisproxy.sqlite').resolve()}" in after.stderr
    finally:
        stranger.stop()
        if stranger_moto is not None:
            stop(stranger_moto)
        if group_alive(first.pid):
            os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)
        wait_until(lambda: not group_alive(first.pid), 30, "the first shell's processes ending")
