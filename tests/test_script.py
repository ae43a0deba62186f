"""`mitmdump -s addons/fisproxy.py`: the same addon in plain mitmproxy (the README's command line)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import VENV_BIN, clean_env, free_port, http_ok, stop, wait_until

SCRIPT = Path(__file__).parent.parent / "addons" / "fisproxy.py"


def test_mitmdump_loads_the_addon_script(tmp_path: Path) -> None:
    port, control = free_port(), free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "mitmdump"), "-s", str(SCRIPT), "--listen-host", "127.0.0.1",
         "-p", str(port), "--set", f"fisproxy_control_port={control}",
         "--set", f"confdir={tmp_path / 'certs'}", "--set", f"fisproxy_state={tmp_path / 's.sqlite'}"],
        cwd=SCRIPT.parent.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=clean_env(),
    )
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{control}/_fisproxy/health"), 60, "mitmdump -s", proc)
    finally:
        stop(proc)
