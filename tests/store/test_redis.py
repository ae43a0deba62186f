"""What is particular to the Redis store, against real redis-server processes: `--store` URLs,
the password never shown, an unreachable or stopped Redis raising StoreUnavailable, a Redis
restart (graceful, or kill -9 with `appendfsync always`) losing no acknowledged write while a
writer keeps going, subscribers resyncing after it, TLS (`rediss://`), and keys staying
bounded."""

from __future__ import annotations

import datetime
import logging
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from fisproxy.fis.runstate import RunState
from fisproxy.store import StoreUnavailable, open_store, redacted
from fisproxy.store.redis import RedisStore
from tests.helpers import clean_env, free_port, redis_server_binary, start_redis, stop
from tests.store.samples import T0, make_experiment, make_template, rec

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word"

pytestmark = pytest.mark.skipif(redis_server_binary() is None,
                                reason="redis-server is not installed (apt-get install redis-server)")


class Server:
    """A redis-server of one test, which the test may stop and start again (same port, same
    directory and AOF). Always stopped at the end."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.directory, self.options = directory, options
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc, _ = start_redis(self.directory, self.port, *self.options)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None:
            if sig == signal.SIGKILL:
                self.proc.kill()
                self.proc.wait()
            else:
                stop(self.proc)
            self.proc = None

    def url(self, password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts redis-servers with more options; every one is stopped after the test."""
    started: list[Server] = []

    def make(*options: str) -> Server:
        started.append(Server(tmp_path / f"redis{len(started)}", *options))
        return started[-1]

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def locked_server(make_server: Callable[..., Server]) -> Server:
    return make_server("--requirepass", PASSWORD)


# ---- --store URLs ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:6379/0", "sqlite:///tmp/x.sqlite", "127.0.0.1:6379", "redis://",
    "redis://127.0.0.1:notaport/0", "redis://127.0.0.1:6379/zero", "redis://127.0.0.1:0/0",
    f"redis://:{PASSWORD}@127.0.0.1:99999/0", f"redis://:{PASSWORD}@127.0.0.1:1/0?socket_timeout=soon",
])
def test_open_store_rejects_what_is_not_a_redis_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--store") as raised:
        open_store(url, tmp_path / "state.sqlite")
    assert PASSWORD not in str(raised.value)
    assert not (tmp_path / "state.sqlite").exists()


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
    ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
    ("redis://user@h:1/0", "redis://user@h:1/0"),
    ("rediss://h:1/2?password=pw&ssl_cert_reqs=none", "rediss://h:1/2?password=***&ssl_cert_reqs=none"),
    ("redis://:p%40ss@h/0", "redis://:***@h/0"),
])
def test_redacted_hides_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_open_store_with_a_redis_url_shares_data_between_stores(server: Server, tmp_path: Path) -> None:
    a = open_store(server.url(), tmp_path / "unused.sqlite")
    b = open_store(f"redis://127.0.0.1:{server.port}", tmp_path / "unused.sqlite")  # db 0 by default
    try:
        assert isinstance(a, RedisStore)
        a.put_template(make_template("EXT1"))
        assert b.get_template("EXT1") == make_template("EXT1")
        assert not (tmp_path / "unused.sqlite").exists()
    finally:
        a.close()
        b.close()


def test_databases_of_one_redis_are_separate_stores(server: Server) -> None:
    a, b = RedisStore(server.url()), RedisStore(f"redis://127.0.0.1:{server.port}/1")
    try:
        a.put_template(make_template("EXT1"))
        assert b.list_templates() == []
    finally:
        a.close()
        b.close()


# ---- passwords and unreachable servers ------------------------------------------------------

def _everything_shown(e: BaseException) -> str:
    return "".join(traceback.format_exception(e)) + repr(e)


def test_unreachable_redis_is_one_clear_error_without_the_password(
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        open_store(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", tmp_path / "s.sqlite")
    assert time.monotonic() - started < 3
    message = str(raised.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message and "unavailable" in message
    assert PASSWORD not in _everything_shown(raised.value) and PASSWORD not in caplog.text


def test_wrong_password_is_store_unavailable_without_the_password(
    locked_server: Server, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (locked_server.url("not-the-" + PASSWORD), locked_server.url()):
        with pytest.raises(StoreUnavailable) as raised:
            RedisStore(url)
        assert PASSWORD not in _everything_shown(raised.value)
    assert PASSWORD not in caplog.text


def test_password_is_never_shown_while_redis_comes_and_goes(
    locked_server: Server, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = RedisStore(locked_server.url(PASSWORD))
    try:
        store.subscribe(["experiment"], lambda kind, key: None)
        store.put_template(make_template("EXT1"))
        assert PASSWORD not in repr(store) and PASSWORD not in store.url
        locked_server.stop()
        with pytest.raises(StoreUnavailable) as raised:
            store.get_template("EXT1")
        assert PASSWORD not in _everything_shown(raised.value)
        time.sleep(0.5)  # the listener notices and logs
        locked_server.start()
        assert store.get_template("EXT1") is not None
    finally:
        store.close()
    assert "interrupted" in caplog.text  # the outage was logged...
    assert PASSWORD not in caplog.text  # ...without the password


def test_password_in_the_query_string_works_and_is_hidden(locked_server: Server) -> None:
    store = RedisStore(f"redis://127.0.0.1:{locked_server.port}/0?password={PASSWORD}")
    try:
        store.put_doc("k", "a", {"x": 1})
        assert store.get_doc("k", "a") == {"x": 1}
        assert PASSWORD not in repr(store)
    finally:
        store.close()


# ---- a Redis that goes away while running ---------------------------------------------------

def test_stopped_redis_raises_store_unavailable_and_the_store_recovers_when_it_returns(
    server: Server,
) -> None:
    store, other = RedisStore(server.url()), RedisStore(server.url())
    got: queue.Queue[tuple[str, str | None]] = queue.Queue()
    try:
        store.subscribe(["experiment"], lambda kind, key: got.put((kind, key)))
        store.put_experiment(make_experiment("EXP1"), RunState(region="r-1"))
        store.publish_change("experiment", "EXP1")
        while got.get(timeout=2) != ("experiment", "EXP1"):
            pass  # the resync notices of subscribing come first; none is left after this
        server.stop()
        for call in (lambda: store.get_experiment("EXP1"), lambda: store.list_experiments(),
                     lambda: store.put_template(make_template("EXT1")),
                     lambda: store.append_log("EXP1", {"n": 1}), lambda: store.append_requests([rec()]),
                     lambda: store.acquire_lease("L", "a", 5), lambda: store.publish_change("experiment", "x"),
                     lambda: store.incr_counters({("m", "a"): 1}), lambda: store.list_proxies()):
            with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{server.port}"):
                call()
        server.start()
        # the same objects work again, without reopening
        assert store.get_runtime("EXP1") == RunState(region="r-1")
        assert store.acquire_lease("L", "a", 5)
        # the subscriber reconnected and was told to resync what it may have missed...
        deadline = time.monotonic() + 5
        while got.get(timeout=max(0.01, deadline - time.monotonic())) != ("experiment", None):
            pass
        # ...and receives notices again
        other.publish_change("experiment", "EXP2")
        while got.get(timeout=max(0.01, deadline - time.monotonic())) != ("experiment", "EXP2"):
            pass
    finally:
        store.close()
        other.close()


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fisproxy.fis.runstate import RunState
    from fisproxy.store import StoreUnavailable, open_store
    from tests.store.samples import make_experiment, make_template
    s = open_store(sys.argv[1], Path("unused"))
    i = 0
    while True:
        try:
            s.put_template(make_template(f"EXT{i}"))
            s.put_experiment(make_experiment(f"EXP{i}"), RunState(region=f"r-{i}"))
            s.put_doc("tok", str(i), {"i": i})
        except StoreUnavailable:
            time.sleep(0.02)  # Redis is restarting: round i again
            continue
        print(i, flush=True)  # acknowledged: all three writes of round i returned
        i += 1
""")


@pytest.mark.parametrize(("how", "options"), [
    (signal.SIGTERM, ()),  # a restart: appendonly yes is enough
    (signal.SIGKILL, ("--appendfsync", "always")),  # a crash: every write fsynced first
], ids=["restart", "kill-9-appendfsync-always"])
def test_redis_restart_loses_no_acknowledged_write(
    make_server: Callable[..., Server], how: signal.Signals, options: tuple[str, ...],
) -> None:
    server = make_server(*options)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, server.url()], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT, env=clean_env(PYTHONPATH=str(ROOT)))
    acked = [-1]

    def read_acks() -> None:
        assert writer.stdout is not None
        for line in writer.stdout:
            acked[0] = int(line)

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    try:
        _wait_for(lambda: acked[0] >= 30, "the writer to get going")
        server.stop(how)
        time.sleep(0.2)  # acknowledgements already in the pipe are read
        at_stop = acked[0]
        time.sleep(0.3)
        assert acked[0] == at_stop, "writes acknowledged while Redis was down"
        server.start()
        _wait_for(lambda: acked[0] >= at_stop + 30, "the writer to carry on after the restart")
    finally:
        writer.kill()
        writer.wait()
        reader.join(5)
    server.stop()
    server.start()  # and once more, reading only what the AOF kept
    store = RedisStore(server.url())
    try:
        last = acked[0]
        print(f"{how.name}: {last + 1} rounds acknowledged, all present after the restarts")
        for i in range(last + 1):
            assert store.get_template(f"EXT{i}") is not None, i
            assert store.get_experiment(f"EXP{i}") is not None, i
            assert store.get_runtime(f"EXP{i}") == RunState(region=f"r-{i}")
            assert store.get_doc("tok", str(i)) == {"i": i}
        assert [t.id for t in store.list_templates()][: last + 1] == [f"EXT{i}" for i in range(last + 1)]
    finally:
        store.close()


def _wait_for(check, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_opening_a_store_on_redis_without_appendonly_warns(
    make_server: Callable[..., Server], caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server("--appendonly", "no")
    with caplog.at_level(logging.WARNING, logger="fisproxy.store.redis"):
        RedisStore(server.url()).close()
    assert "appendonly" in caplog.text


def test_opening_a_store_on_redis_with_appendonly_does_not_warn(
    server: Server, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="fisproxy.store.redis"):
        RedisStore(server.url()).close()
    assert "appendonly" not in caplog.text


# ---- TLS ------------------------------------------------------------------------------------

def test_rediss_url_talks_tls(make_server: Callable[..., Server], tmp_path: Path) -> None:
    ca, cert, key = _tls_files(tmp_path)
    port = free_port()
    make_server("--tls-port", str(port),  # beside the plain port
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no")
    store = RedisStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    try:
        store.put_template(make_template("EXT1"))
        assert [t.id for t in store.list_templates()] == ["EXT1"]
    finally:
        store.close()
    with pytest.raises(StoreUnavailable):  # a plain client on the TLS port gets nowhere
        RedisStore(f"redis://127.0.0.1:{port}/0")


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
             signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   # Python 3.13 verifies strictly (VERIFY_X509_STRICT): key identifiers and
                   # key usage are required, as in any real certificate.
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                                  critical=False)
                   .add_extension(x509.KeyUsage(
                       digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=not ca,
                       encipher_only=False, decipher_only=False), critical=True))
        if not ca:
            import ipaddress
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("fisproxy test CA", ca_key, None, ca_key, True)
    server_cert = cert("127.0.0.1", key, ca_cert.subject, ca_key, False)
    paths = directory / "ca.pem", directory / "redis.pem", directory / "redis.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# ---- bounded keys ---------------------------------------------------------------------------

def test_deleting_and_expiring_leaves_no_keys_behind(server: Server) -> None:
    store = RedisStore(server.url())
    raw = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    try:
        store.put_template(make_template("EXT1"))
        store.put_doc("client-token", "t1", {"id": "EXT1"})
        store.append_requests([rec(T0 + i) for i in range(10)])
        store.acquire_lease("run/EXP1", "a", 0.2)
        store.register_proxy("p-old", {"version": "0"}, 0.2)
        store.delete_template("EXT1")
        store.delete_doc("client-token", "t1")
        assert store.delete_requests_before(T0 + 100) == 10
        time.sleep(0.3)
        store.register_proxy("p-new", {"version": "1"}, 30)  # sweeps the expired p-old
        assert raw.hkeys("fisproxy:proxy") == ["p-new"]
        # Counters and markers stay (creation numbers, the layout's version, the data version).
        assert sorted(raw.keys("*")) == ["fisproxy:proxies", "fisproxy:proxy", "fisproxy:requests:seq",
                                         "fisproxy:schema", "fisproxy:seq", "fisproxy:version"]
    finally:
        raw.close()
        store.close()
