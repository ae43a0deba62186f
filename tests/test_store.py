"""The SQLite store: models round-trip, runtime kept beside experiments, and every
acknowledged write survives `kill -9` of the writing process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fisproxy.fis.models import (
    Experiment,
    ExperimentAction,
    ExperimentActionState,
    ExperimentState,
    ExperimentTemplate,
)
from fisproxy.store import Store
from tests.helpers import clean_env

T = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def make_template(template_id: str, description: str = "d") -> ExperimentTemplate:
    return ExperimentTemplate.model_validate({
        "id": template_id, "arn": f"arn:aws:fis:us-east-1:123456789012:experiment-template/{template_id}",
        "description": description, "roleArn": "arn:aws:iam::123456789012:role/fis",
        "targets": {"r": {"resourceType": "aws:iam:role", "resourceArns": ["arn:aws:iam::123456789012:role/app"],
                          "selectionMode": "COUNT(1)"}},
        "actions": {"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}},
        "stopConditions": [{"source": "none"}], "creationTime": T, "lastUpdateTime": T, "tags": {"Name": "x"},
    })


def make_experiment(experiment_id: str, status: str = "running") -> Experiment:
    return Experiment(
        id=experiment_id, experiment_template_id="EXT1",
        state=ExperimentState(status=status, reason="r"),  # type: ignore[arg-type]
        actions={"w": ExperimentAction(action_id="aws:fis:wait", parameters={"duration": "PT1M"},
                                       state=ExperimentActionState(status="running"), start_time=T)},
        creation_time=T, start_time=T,
    )


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "deep" / "dir" / "state.sqlite")
    yield s
    s.close()


def test_creates_parent_dirs_and_uses_wal(store: Store) -> None:
    assert store.path.exists()
    assert store._run("PRAGMA journal_mode")[0][0] == "wal"
    assert store._run("PRAGMA synchronous")[0][0] == 2  # FULL


def test_templates_round_trip_in_creation_order(store: Store) -> None:
    a, b, c = make_template("EXTa"), make_template("EXTb"), make_template("EXTc")
    for t in (b, a, c):
        store.put_template(t)
    assert [t.id for t in store.list_templates()] == ["EXTb", "EXTa", "EXTc"]
    assert store.get_template("EXTa") == a
    assert store.get_template("EXTa").creation_time == T  # type: ignore[union-attr]
    store.put_template(make_template("EXTb", "changed"))  # an update keeps its place
    assert [t.id for t in store.list_templates()] == ["EXTb", "EXTa", "EXTc"]
    assert store.get_template("EXTb").description == "changed"  # type: ignore[union-attr]
    store.delete_template("EXTa")
    assert store.get_template("EXTa") is None
    assert [t.id for t in store.list_templates()] == ["EXTb", "EXTc"]


def test_experiments_and_runtime(store: Store) -> None:
    e = make_experiment("EXP1")
    store.put_experiment(e, {"region": "us-east-1", "clock": 1.5})
    assert store.get_experiment("EXP1") == e
    assert store.get_runtime("EXP1") == {"region": "us-east-1", "clock": 1.5}
    e.state = ExperimentState(status="completed", reason="Experiment completed.")
    store.put_experiment(e)  # no runtime: the stored one stays
    assert store.get_runtime("EXP1") == {"region": "us-east-1", "clock": 1.5}
    assert store.get_experiment("EXP1").state.status == "completed"  # type: ignore[union-attr]
    store.put_experiment(e, {"clock": 2})
    assert store.get_runtime("EXP1") == {"clock": 2}
    store.put_experiment(make_experiment("EXP0"))
    assert [x.id for x in store.list_experiments()] == ["EXP1", "EXP0"]
    assert store.get_runtime("EXP0") is None
    assert store.get_experiment("nope") is None and store.get_runtime("nope") is None


def test_docs_and_logs(store: Store) -> None:
    store.put_doc("client-token", "a", {"id": "EXT1"})
    store.put_doc("client-token", "b", {"id": "EXT2"})
    store.put_doc("other", "a", {"x": 1})
    store.put_doc("client-token", "a", {"id": "EXT3"})
    assert store.get_doc("client-token", "a") == {"id": "EXT3"}
    assert store.list_docs("client-token") == {"a": {"id": "EXT3"}, "b": {"id": "EXT2"}}
    store.delete_doc("client-token", "a")
    assert store.get_doc("client-token", "a") is None and store.list_docs("nothing") == {}
    for i in range(3):
        store.append_log("EXP1", {"n": i})
    store.append_log("EXP2", {"n": 9})
    assert store.logs("EXP1") == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert store.logs("EXP3") == []


def test_concurrent_writers_share_one_connection(store: Store) -> None:
    def write(k: int) -> None:
        for i in range(50):
            store.append_log("EXP", {"k": k, "i": i})
            store.put_doc("d", f"{k}-{i}", {"i": i})

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.logs("EXP")) == 200 and len(store.list_docs("d")) == 200


_WRITER = textwrap.dedent("""
    import sys
    from fisproxy.store import Store
    from tests.test_store import make_experiment, make_template
    s = Store(sys.argv[1])
    i = 0
    while True:
        s.put_template(make_template(f"EXT{i}"))
        s.put_experiment(make_experiment(f"EXP{i}"), {"i": i})
        s.put_doc("tok", str(i), {"i": i})
        s.append_log("EXP", {"i": i})
        print(i, flush=True)  # acknowledged: all four writes of round i returned
        i += 1
""")


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE, cwd=root,
                            env=clean_env(PYTHONPATH=str(root)), text=True)
    assert proc.stdout is not None
    acked = -1
    deadline = time.monotonic() + 60
    while acked < 30 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Lines printed before the kill but not yet read are acknowledged too.
    for line in proc.stdout.read().split():
        acked = int(line)
    assert acked >= 30, "the writer did not get going"

    s = Store(db)
    try:
        for i in range(acked + 1):
            assert s.get_template(f"EXT{i}") is not None, i
            assert s.get_experiment(f"EXP{i}") is not None, i
            assert s.get_runtime(f"EXP{i}") == {"i": i}
            assert s.get_doc("tok", str(i)) == {"i": i}
        assert [r["i"] for r in s.logs("EXP")][: acked + 1] == list(range(acked + 1))
    finally:
        s.close()
