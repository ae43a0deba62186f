"""One moto server for every FIS test that talks to an upstream (alarms, logs, IAM)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import start_moto, stop


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield url
    finally:
        stop(proc)
