"""The sources file: what a good one gives, and that every mistake names its entry and field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ingest.sources.config import (
    FolderSource,
    MeshSource,
    SourcesConfigError,
    census_date_in_filename,
    config_path,
    load_sources,
    parse_sources,
)
from tests.test_sources_support import write_sources_file

MESH_ENV = {"PTL_MESH_PASSWORD": "password", "PTL_MESH_KEY": "TestKey"}


def _mesh(name: str = "rzb-mesh", **extra: object) -> dict[str, object]:
    return {"name": name, "provider": "rzb", "profile": "canonical", "kind": "mesh",
            "url": "https://mesh.example.nhs.uk/", "mailbox": "x26abc2",
            "password_env": "PTL_MESH_PASSWORD", "shared_key_env": "PTL_MESH_KEY", **extra}


def _errors(tmp_path: Path, sources: list[dict[str, object]], scheduler: dict[str, object] | None = None,
            environ: dict[str, str] | None = None) -> str:
    path = write_sources_file(tmp_path / "sources.toml", sources, scheduler)
    with pytest.raises(SourcesConfigError) as caught:
        load_sources(path, environ=MESH_ENV if environ is None else environ)
    return str(caught.value)


def test_a_good_file_gives_typed_sources(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "rza.toml").write_text(
        'name = "rza-local"\n[columns]\nlocal_patient_id = "Hospital No"\n'
        'pathway_id = "PPI"\nrtt_start_date = "Clock Start"\nwaiting_list_type = "List"\n'
        'treatment_function_code = "TFC"\n', encoding="utf-8")
    path = write_sources_file(tmp_path / "sources.toml", [
        {"name": "rza-drop", "provider": "rza", "profile": "profiles/rza.toml", "kind": "folder",
         "path": "drop", "poll_minutes": 2, "require_done_marker": True},
        _mesh(workflow_id="PTL_WEEKLY"),
    ], scheduler={"housekeeping_at": "03:15", "keep_days": 7, "lease_seconds": 5})
    config = load_sources(path, environ=MESH_ENV)
    folder, mesh = config.sources
    assert isinstance(folder, FolderSource) and isinstance(mesh, MeshSource)
    # Relative paths are relative to the sources file, provider codes are upper case.
    assert folder.path == tmp_path / "drop" and folder.provider_code == "RZA"
    assert folder.profile.name == "rza-local" and folder.require_done_marker
    assert folder.poll_minutes == 2 and mesh.poll_minutes == 5  # default interval: 5 minutes
    assert mesh.url == "https://mesh.example.nhs.uk" and mesh.mailbox == "X26ABC2"
    assert mesh.secrets(MESH_ENV).password == "password"
    assert config.scheduler.housekeeping_at == dt.time(3, 15) and config.scheduler.keep_days == 7
    assert config.source("rzb-mesh") is mesh


def test_every_problem_names_the_entry_and_field(tmp_path: Path) -> None:
    message = _errors(tmp_path, [
        {"name": "rza-drop", "provider": "RZA", "profile": "wlmds", "kind": "folder",
         "path": str(tmp_path / "missing"), "poll_minuts": 5},
        _mesh(url="ftp://mesh"),
        {"name": "bad-kind", "provider": "RZC", "profile": "wlmds", "kind": "sftp"},
        {"name": "no-profile", "provider": "RZD", "profile": "nonesuch", "kind": "folder",
         "path": str(tmp_path), "poll_minutes": 0},
    ])
    assert "[[source]] #1 'rza-drop': unknown field 'poll_minuts' (did you mean 'poll_minutes'?)" in message
    assert "[[source]] #1 'rza-drop': field 'path':" in message and "not an existing directory" in message
    assert "[[source]] #2 'rzb-mesh': field 'url' must be an https:// address" in message
    assert "[[source]] #3 'bad-kind': field 'kind' must be \"folder\" or \"mesh\"" in message
    assert "[[source]] #4 'no-profile': field 'profile': unknown profile 'nonesuch'" in message
    assert "[[source]] #4 'no-profile': field 'poll_minutes' must be a positive number" in message


def test_mesh_secrets_must_be_set_in_the_environment(tmp_path: Path) -> None:
    message = _errors(tmp_path, [_mesh(cert_env="PTL_MESH_CERT", key_env="PTL_MESH_CERT_KEY")],
                      environ={"PTL_MESH_PASSWORD": "x", "PTL_MESH_CERT": str(tmp_path / "nope.pem")})
    assert "field 'shared_key_env' names PTL_MESH_KEY, which is not set" in message
    assert "field 'cert_env': PTL_MESH_CERT points at" in message and "which is not a file" in message
    assert "field 'key_env' names PTL_MESH_CERT_KEY, which is not set" in message
    # `ptl sources status` reads the file without needing the secrets.
    path = tmp_path / "sources.toml"
    assert load_sources(path, environ={}, check_secrets=False).sources[0].name == "rzb-mesh"


def test_required_fields_duplicates_and_shared_mailboxes(tmp_path: Path) -> None:
    message = _errors(tmp_path, [
        {"name": "x", "kind": "mesh"},
        _mesh("one"), _mesh("one"), _mesh("two", provider="RZC"),
    ])
    for field in ("provider", "profile", "url", "mailbox", "password_env", "shared_key_env"):
        assert f"[[source]] #1 'x': field '{field}' is required" in message
    assert "[[source]] #3 'one': name 'one' is already used by [[source]] #2" in message
    assert "sources 'one', 'two' all poll mailbox X26ABC2" in message
    # With a sender each, two providers can share one mailbox.
    path = write_sources_file(tmp_path / "ok.toml", [_mesh("one", sender="X26ABC1"),
                                                      _mesh("two", provider="RZC", sender="X26ABC3")])
    assert [s.name for s in load_sources(path, environ=MESH_ENV).sources] == ["one", "two"]


def test_scheduler_table_and_empty_files(tmp_path: Path) -> None:
    message = _errors(tmp_path, [], scheduler={"housekeeping_at": "2:30am", "keep_days": -1})
    assert "[scheduler]: housekeeping_at must be a time HH:MM" in message
    assert "[scheduler]: keep_days must be a whole number" in message
    assert "no sources: add at least one [[source]] table" in message


def test_unreadable_or_missing_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(SourcesConfigError, match="does not exist"):
        load_sources(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("[[source]\n", encoding="utf-8")
    with pytest.raises(SourcesConfigError, match="is not valid TOML"):
        load_sources(tmp_path / "broken.toml")
    with pytest.raises(SourcesConfigError, match="pass --config FILE or set PTL_SOURCES"):
        config_path(None, "")
    assert config_path(None, "/etc/ptl/sources.toml") == Path("/etc/ptl/sources.toml")


@pytest.mark.parametrize(("name", "expected"), [
    ("RZA_2025-11-23.csv", dt.date(2025, 11, 23)),
    ("ptl_20251123_v2.xlsx", dt.date(2025, 11, 23)),
    ("ptl_2025_11_23.parquet", dt.date(2025, 11, 23)),
    ("extract-20251399-then-2025-11-30.csv", dt.date(2025, 11, 30)),
    ("ptl.csv", None),
    ("ptl_120251123.csv", None),
])
def test_census_date_in_filename(name: str, expected: dt.date | None) -> None:
    assert census_date_in_filename(name) == expected


def test_the_deploy_example_matches_the_schema(tmp_path: Path) -> None:
    """deploy/sources.example.toml uses only real fields: with its folders, profiles and secrets
    provided, it loads as written."""
    import tomllib

    example = Path(__file__).resolve().parents[1] / "deploy" / "sources.example.toml"
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    env: dict[str, str] = {}
    for source in raw["source"]:
        if source["kind"] == "folder":
            source["path"] = str(tmp_path / source["name"])
            Path(source["path"]).mkdir()
        if source["profile"].endswith(".toml"):
            source["profile"] = "canonical"
        for key in ("password_env", "shared_key_env", "cert_env", "key_env", "ca_env"):
            if key in source:
                env[source[key]] = str(example)  # any existing file will do for certificates
    config = parse_sources(raw, path=example, environ=env)
    assert [s.kind for s in config.sources] == ["folder", "folder", "mesh"]
    assert config.scheduler.keep_days == 30
