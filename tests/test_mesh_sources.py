"""MESH end to end against a real `mesh-sandbox` server started on loopback for this module:
messages sent with NHS England's `mesh-client`, polled by a MESH source, loaded, and acknowledged
only once the feed is recorded; redelivery after a crash before the acknowledgement is a no-op."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_client import MeshClient
from sqlalchemy import Engine, func, select

from ingest.sources.config import MeshSource, load_sources
from ingest.sources.poll import poll_source
from ptl.settings import Settings
from ptl.store.models import Feed
from ptl.store.sources import SourceReceipt
from ptl.synth import SynthFeed, SynthSystem, generate_system
from tests.test_sources_support import (
    CENSUS,
    run_ptl,
    store_url_of,
    write_sources_file,
)

SHARED_KEY = "SandboxKey"
PASSWORD = "password"
ENV = {"PTL_TEST_MESH_PASSWORD": PASSWORD, "PTL_TEST_MESH_KEY": SHARED_KEY}
WORKFLOW = "TEST_WORKFLOW"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def mesh_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A mesh-sandbox on a free loopback port (file store in a temporary directory)."""
    port = _free_port()
    store = tmp_path_factory.mktemp("mesh-store")
    env = {**os.environ, "STORE_MODE": "file", "FILE_STORE_DIR": str(store), "SHARED_KEY": SHARED_KEY}
    uvicorn = Path(sys.executable).with_name("uvicorn")
    server = subprocess.Popen(
        [str(uvicorn), "mesh_sandbox.api:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"mesh-sandbox did not start: {server.stderr.read().decode() if server.stderr else ''}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def mesh(mesh_url: str) -> str:
    """The sandbox with every mailbox emptied (test-only admin endpoint)."""
    request = urllib.request.Request(f"{mesh_url}/messageexchange/admin/reset", method="DELETE")
    with urllib.request.urlopen(request, timeout=5):
        pass
    return mesh_url


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> SynthSystem:
    return generate_system(tmp_path_factory.mktemp("synth"), trusts=2, independents=1, patients=300,
                           weeks=1, census_date=CENSUS, seed=5)


def _client(url: str, mailbox: str) -> MeshClient:
    return MeshClient(url, mailbox, PASSWORD, shared_key=SHARED_KEY.encode(), max_retries=0)


def send(url: str, sender: str, recipient: str, data: bytes, filename: str) -> str:
    with _client(url, sender) as client:
        return str(client.send_message(recipient, data, workflow_id=WORKFLOW, filename=filename,
                                       subject="weekly PTL"))


def inbox(url: str, mailbox: str) -> list[str]:
    with _client(url, mailbox) as client:
        return list(client.list_messages())


def _mesh_source(name: str, feed: SynthFeed, url: str, mailbox: str = "X26ABC2", **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": feed.provider_code, "profile": feed.profile, "kind": "mesh",
            "poll_minutes": 5, "url": url, "mailbox": mailbox, "password_env": "PTL_TEST_MESH_PASSWORD",
            "shared_key_env": "PTL_TEST_MESH_KEY", "census_date_from_filename": True, **extra}


def _source(tmp_path: Path, spec: dict[str, Any]) -> MeshSource:
    source = load_sources(write_sources_file(tmp_path / "sources.toml", [spec]), environ=ENV).sources[0]
    assert isinstance(source, MeshSource)
    return source


def _feed_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Feed)).scalar_one())


def test_a_message_is_loaded_then_acknowledged(store_engine: Engine, mesh: str, system: SynthSystem,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    feed = next(f for f in system.feeds if f.file_format == "csv")
    message_id = send(mesh, "X26ABC1", "X26ABC2", feed.path.read_bytes(), feed.path.name)
    assert inbox(mesh, "X26ABC2") == [message_id]
    config = write_sources_file(tmp_path / "sources.toml", [_mesh_source("mesh-in", feed, mesh)])
    env = {**ENV, "PTL_DATABASE_URL": store_url_of(store_engine), "PTL_VAR_DIR": str(tmp_path / "var"),
           "PTL_LOG_FORMAT": "json"}

    code, out, _err = run_ptl(["sources", "poll", "--once", "--no-hooks", "--json", "--config", str(config)],
                              monkeypatch, capsys, env)
    assert code == 0, out
    files = json.loads(out)["sources"][0]["files"]
    assert [(f["status"], f["message_id"], f["name"]) for f in files] == [("loaded", message_id, feed.path.name)]
    with store_engine.connect() as connection:
        loaded = connection.execute(select(Feed)).one()
    assert (loaded.status, loaded.source, loaded.provider_code) == ("loaded", "mesh", feed.provider_code)
    assert (loaded.rows_loaded, loaded.rows_rejected) == (feed.expected_loaded, feed.expected_rejected)
    assert inbox(mesh, "X26ABC2") == []  # acknowledged
    assert not any((tmp_path / "var" / "mesh" / "mesh-in").iterdir())  # download cleaned up


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an `Exception`, so nothing on the way catches it."""


def _crash(message_id: str) -> None:
    raise SimulatedCrash(message_id)


def test_redelivery_after_a_crash_before_acknowledge_is_a_no_op(store_engine: Engine, mesh: str,
                                                                system: SynthSystem, tmp_path: Path) -> None:
    feed = next(f for f in system.feeds if f.file_format == "csv")
    source = _source(tmp_path, _mesh_source("mesh-in", feed, mesh))
    settings = Settings(database_url=store_url_of(store_engine), var_dir=tmp_path / "var")
    message_id = send(mesh, "X26ABC1", "X26ABC2", feed.path.read_bytes(), feed.path.name)

    with pytest.raises(SimulatedCrash):
        poll_source(store_engine, source, settings, environ=ENV, before_acknowledge=_crash)
    assert _feed_count(store_engine) == 1  # the feed was recorded…
    assert inbox(mesh, "X26ABC2") == [message_id]  # …but MESH still holds the message

    report = poll_source(store_engine, source, settings, environ=ENV)
    assert report.ok and [(f.status, f.message_id) for f in report.files] == [("duplicate", message_id)]
    assert "already received as feed" in report.files[0].message
    assert _feed_count(store_engine) == 1
    assert inbox(mesh, "X26ABC2") == []

    # The same content sent again as a new message: the sha256 check makes it a no-op too.
    again = send(mesh, "X26ABC1", "X26ABC2", feed.path.read_bytes(), feed.path.name)
    report = poll_source(store_engine, source, settings, environ=ENV)
    with store_engine.connect() as connection:
        first_feed = connection.execute(select(Feed.id)).scalar_one()
        receipts = connection.execute(select(SourceReceipt.message_id, SourceReceipt.outcome)
                                      .order_by(SourceReceipt.id)).all()
    assert [(f.status, f.message) for f in report.files] == [("duplicate", f"already loaded as feed {first_feed}")]
    assert [tuple(r) for r in receipts] == [(message_id, "loaded"), (again, "duplicate")]
    assert _feed_count(store_engine) == 1 and inbox(mesh, "X26ABC2") == []


def test_refused_messages_are_recorded_then_acknowledged(store_engine: Engine, mesh: str,
                                                         system: SynthSystem, tmp_path: Path) -> None:
    feed = next(f for f in system.feeds if f.file_format == "csv")
    source = _source(tmp_path, _mesh_source("mesh-in", feed, mesh))
    settings = Settings(database_url=store_url_of(store_engine), var_dir=tmp_path / "var")
    send(mesh, "X26ABC1", "X26ABC2", b"colour,size\nred,3\n", f"notes_{CENSUS}.csv")
    report = poll_source(store_engine, source, settings, environ=ENV)
    assert [f.status for f in report.files] == ["refused"] and report.ok
    assert "missing required column" in report.files[0].message
    with store_engine.connect() as connection:
        assert connection.execute(select(Feed.status, Feed.source)).one() == ("refused", "mesh")
    assert inbox(mesh, "X26ABC2") == []


def test_providers_sharing_a_mailbox_are_routed_by_sender(store_engine: Engine, mesh: str,
                                                          system: SynthSystem, tmp_path: Path) -> None:
    first, second = [f for f in system.feeds if f.file_format == "csv"][:2]
    config = load_sources(write_sources_file(tmp_path / "sources.toml", [
        _mesh_source("first", first, mesh, mailbox="X26ABC3", sender="X26ABC1"),
        _mesh_source("second", second, mesh, mailbox="X26ABC3", sender="X26ABC2"),
    ]), environ=ENV)
    settings = Settings(database_url=store_url_of(store_engine), var_dir=tmp_path / "var")
    send(mesh, "X26ABC2", "X26ABC3", second.path.read_bytes(), second.path.name)
    send(mesh, "X26ABC1", "X26ABC3", first.path.read_bytes(), first.path.name)

    report = poll_source(store_engine, config.source("first"), settings, environ=ENV)
    assert [f.name for f in report.files] == [first.path.name]
    assert len(inbox(mesh, "X26ABC3")) == 1  # the other provider's message is left alone
    report = poll_source(store_engine, config.source("second"), settings, environ=ENV)
    assert [f.name for f in report.files] == [second.path.name]
    with store_engine.connect() as connection:
        providers = connection.execute(select(Feed.provider_code, Feed.filename).order_by(Feed.id)).all()
    assert [tuple(p) for p in providers] == [(first.provider_code, first.path.name),
                                             (second.provider_code, second.path.name)]


@pytest.mark.sqlite
def test_a_refused_login_fails_the_source_not_the_run(mesh: str, system: SynthSystem, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    feed = next(f for f in system.feeds if f.file_format == "csv")
    folder = tmp_path / "drop"
    (folder / "inbox").mkdir(parents=True)
    config = write_sources_file(tmp_path / "sources.toml", [
        _mesh_source("mesh-in", feed, mesh, password_env="PTL_TEST_WRONG_PASSWORD"),
        {"name": "drop", "provider": feed.provider_code, "profile": feed.profile, "kind": "folder",
         "path": str(folder)},
    ])
    env = {**ENV, "PTL_TEST_WRONG_PASSWORD": "not-the-password",
           "PTL_DATABASE_URL": f"sqlite:///{tmp_path / 'ptl.sqlite3'}", "PTL_LOG_FORMAT": "json"}
    assert run_ptl(["db", "upgrade"], monkeypatch, capsys, env)[0] == 0
    code, out, err = run_ptl(["sources", "poll", "--once", "--config", str(config)], monkeypatch, capsys, env)
    assert code == 1  # a broken source is the only reason for a non-zero exit
    assert "FAILED  MESH mailbox X26ABC2 refused the request (HTTP 403)" in out
    assert "drop (folder" in out  # the other source was still polled
    assert "not-the-password" not in out + err
