"""The README's Chaos API commands, run as written against the real proxy: its last line, "all
clear", leaves no fault rule and no effect behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.e2e.conftest import Fisproxy
from tests.helpers import clean_env

README = Path(__file__).resolve().parents[2] / "README.md"


def chaos_block() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    [block] = [b for b in blocks if "curl -X POST localhost:8082/_localstack/chaos/faults" in b]
    return block


def test_readme_chaos_commands_end_all_clear(proxy: Fisproxy) -> None:
    block = chaos_block()
    assert block.rstrip().endswith("# all clear")
    script = block.replace("localhost:8082", f"127.0.0.1:{proxy.control_port}")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                            timeout=60, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert proxy.control("GET", "/_localstack/chaos/faults").json() == []
    assert proxy.control("GET", "/_localstack/chaos/effects").json().get("latency", 0) == 0
