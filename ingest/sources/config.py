"""The sources configuration file: which drop folders and MESH mailboxes feed the store.

One TOML file (path from `PTL_SOURCES` or `--config`), one `[[source]]` table per provider feed,
plus an optional `[scheduler]` table::

    [scheduler]
    housekeeping_at = "02:30"   # Europe/London, nightly
    keep_days = 30              # processed/ and failed/ files older than this are deleted
    lease_seconds = 10          # how often the active scheduler checks its lock

    [[source]]
    name = "rza-drop"
    provider = "RZA"
    profile = "wlmds"           # built-in name or a profile .toml (relative to this file)
    kind = "folder"
    poll_minutes = 5
    path = "/srv/ptl/drop/rza"  # holds inbox/, processed/, failed/

    [[source]]
    name = "rzb-mesh"
    provider = "RZB"
    profile = "profiles/rzb.toml"
    kind = "mesh"
    url = "https://msg.intspineservices.nhs.uk"
    mailbox = "X26ABC2"
    password_env = "PTL_MESH_PASSWORD"      # names of environment variables, never the secrets
    shared_key_env = "PTL_MESH_SHARED_KEY"

Everything is checked when the file is loaded, and every problem is reported at once naming the
entry and the field, so an operator fixes the file in one go.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.errors import IngestError, ProfileError
from ingest.profiles import Profile, load_profile

DEFAULT_POLL_MINUTES = 5.0
#: A drop-folder file is taken once its size and mtime have not changed for this long.
DEFAULT_SETTLE_SECONDS = 60.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PROVIDER = re.compile(r"^[A-Z0-9]{3,6}$")
_MAILBOX = re.compile(r"^[A-Za-z0-9]{3,20}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")

_COMMON_KEYS = {"name", "provider", "profile", "kind", "poll_minutes", "census_date_from_filename"}
#: A date in a file name: 2026-11-22, 2026_11_22 or 20261122.
_FILENAME_DATE = re.compile(r"(?<![0-9])(20[0-9]{2})[-_]?([01][0-9])[-_]?([0-3][0-9])(?![0-9])")
_FOLDER_KEYS = _COMMON_KEYS | {"path", "settle_seconds", "require_done_marker"}
_MESH_KEYS = _COMMON_KEYS | {"url", "mailbox", "password_env", "shared_key_env", "cert_env",
                             "key_env", "ca_env", "workflow_id", "sender"}
_SCHEDULER_KEYS = {"housekeeping_at", "keep_days", "lease_seconds"}


class SourcesConfigError(IngestError):
    """The sources configuration file is missing, malformed or names something that is not there."""


@dataclass(frozen=True)
class FolderSource:
    """A shared folder a provider drops extracts into (`inbox/`), sorted into `processed/` and `failed/`."""

    name: str
    provider_code: str
    profile: Profile
    profile_ref: str
    poll_minutes: float
    path: Path
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    require_done_marker: bool = False
    census_date_from_filename: bool = False
    kind: str = "folder"

    @property
    def inbox(self) -> Path:
        return self.path / "inbox"

    @property
    def processed(self) -> Path:
        return self.path / "processed"

    @property
    def failed(self) -> Path:
        return self.path / "failed"


@dataclass(frozen=True)
class MeshSecrets:
    """Credentials read from the environment variables a MESH source names."""

    password: str
    shared_key: str
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class MeshSource:
    """A MESH mailbox a provider sends extracts to."""

    name: str
    provider_code: str
    profile: Profile
    profile_ref: str
    poll_minutes: float
    url: str
    mailbox: str
    password_env: str
    shared_key_env: str
    cert_env: str | None = None
    key_env: str | None = None
    ca_env: str | None = None
    workflow_id: str | None = None
    sender: str | None = None
    census_date_from_filename: bool = False
    kind: str = "mesh"

    def secrets(self, environ: Mapping[str, str] | None = None) -> MeshSecrets:
        """Read the credentials now; raises `SourcesConfigError` naming the missing variable."""
        env = os.environ if environ is None else environ
        problems = _secret_problems(self, env)
        if problems:
            raise SourcesConfigError(f"source '{self.name}': " + "; ".join(problems))

        def file_of(var: str | None) -> Path | None:
            return Path(env[var]) if var else None

        return MeshSecrets(password=env[self.password_env], shared_key=env[self.shared_key_env],
                           cert=file_of(self.cert_env), key=file_of(self.key_env),
                           ca=file_of(self.ca_env))


Source = FolderSource | MeshSource


def census_date_in_filename(name: str) -> dt.date | None:
    """The first valid date in a file name (for extracts without a census date column, when
    the source sets `census_date_from_filename = true`)."""
    for match in _FILENAME_DATE.finditer(name):
        try:
            return dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            continue
    return None


def declared_census_date(source: Source, name: str) -> dt.date | None:
    return census_date_in_filename(name) if source.census_date_from_filename else None


@dataclass(frozen=True)
class SchedulerOptions:
    """The `[scheduler]` table."""

    housekeeping_at: dt.time = dt.time(2, 30)
    keep_days: int = 30
    lease_seconds: float = 10.0


@dataclass(frozen=True)
class SourcesConfig:
    path: Path
    sources: tuple[Source, ...]
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise SourcesConfigError(
            f"{self.path}: there is no source '{name}'; configured: "
            + ", ".join(s.name for s in self.sources)
        )


def config_path(explicit: Path | str | None, sources_path: str) -> Path:
    """The file to read: `--config` if given, else `PTL_SOURCES`; a clear error when neither is."""
    chosen = explicit or sources_path
    if not chosen:
        raise SourcesConfigError(
            "no sources configuration: pass --config FILE or set PTL_SOURCES "
            "(see deploy/sources.example.toml)"
        )
    return Path(chosen)


def load_sources(path: Path, *, environ: Mapping[str, str] | None = None,
                 check_secrets: bool = True) -> SourcesConfig:
    """Read and check the sources file. With `check_secrets`, the environment variables that
    MESH sources name must be set (and certificate files must exist) too."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourcesConfigError(f"sources file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourcesConfigError(f"sources file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesConfigError(f"sources file {path} cannot be read: {exc}") from None
    return parse_sources(raw, path=path, environ=environ, check_secrets=check_secrets)


def parse_sources(raw: dict[str, Any], *, path: Path, environ: Mapping[str, str] | None = None,
                  check_secrets: bool = True) -> SourcesConfig:
    """Check the parsed TOML; every problem is collected and reported together."""
    env = os.environ if environ is None else environ
    base = path.parent
    problems: list[str] = []
    unknown = sorted(set(raw) - {"source", "scheduler"})
    if unknown:
        problems.append(f"unknown top-level setting(s) {', '.join(unknown)}; allowed: [[source]], [scheduler]")
    scheduler = _scheduler_options(raw.get("scheduler", {}), problems)
    entries = raw.get("source", [])
    if not isinstance(entries, list) or not entries:
        problems.append("no sources: add at least one [[source]] table")
        entries = []
    sources: list[Source] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        label = f"[[source]] #{number}"
        if not isinstance(entry, dict):
            problems.append(f"{label} must be a table")
            continue
        name = entry.get("name")
        if isinstance(name, str) and name:
            label = f"[[source]] #{number} '{name}'"
        source = _source(entry, label, base, env, check_secrets, problems)
        if source is None:
            continue
        if source.name in seen:
            problems.append(f"{label}: name '{source.name}' is already used by [[source]] #{seen[source.name]}")
            continue
        seen[source.name] = number
        sources.append(source)
    problems.extend(_shared_mailbox_problems(sources))
    if problems:
        raise SourcesConfigError(f"sources file {path} is not usable:\n  - " + "\n  - ".join(problems))
    return SourcesConfig(path=path, sources=tuple(sources), scheduler=scheduler)


def _suggest(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _scheduler_options(table: Any, problems: list[str]) -> SchedulerOptions:
    if not isinstance(table, dict):
        problems.append("[scheduler] must be a table")
        return SchedulerOptions()
    for key in sorted(set(table) - _SCHEDULER_KEYS):
        problems.append(f"[scheduler]: unknown field '{key}'{_suggest(key, _SCHEDULER_KEYS)}")
    options = SchedulerOptions()
    at = table.get("housekeeping_at", "02:30")
    match = _TIME.match(at) if isinstance(at, str) else None
    if match is None:
        problems.append(f"[scheduler]: housekeeping_at must be a time HH:MM (Europe/London), not {at!r}")
        housekeeping_at = options.housekeeping_at
    else:
        housekeeping_at = dt.time(int(match[1]), int(match[2]))
    keep_days = table.get("keep_days", options.keep_days)
    if isinstance(keep_days, bool) or not isinstance(keep_days, int) or keep_days < 0:
        problems.append(f"[scheduler]: keep_days must be a whole number of days >= 0 (0 keeps files forever), not {keep_days!r}")
        keep_days = options.keep_days
    lease = table.get("lease_seconds", options.lease_seconds)
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0.2 <= lease <= 600:
        problems.append(f"[scheduler]: lease_seconds must be a number of seconds between 0.2 and 600, not {lease!r}")
        lease = options.lease_seconds
    return SchedulerOptions(housekeeping_at=housekeeping_at, keep_days=keep_days, lease_seconds=float(lease))


def _source(entry: dict[str, Any], label: str, base: Path, env: Mapping[str, str],
            check_secrets: bool, problems: list[str]) -> Source | None:
    before = len(problems)

    def text(key: str, *, required: bool = True) -> str | None:
        value = entry.get(key)
        if value is None:
            if required:
                problems.append(f"{label}: field '{key}' is required")
            return None
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{label}: field '{key}' must be non-empty text, not {value!r}")
            return None
        return value.strip()

    kind = text("kind")
    if kind is not None and kind not in ("folder", "mesh"):
        problems.append(f"{label}: field 'kind' must be \"folder\" or \"mesh\", not {kind!r}")
        kind = None
    allowed = _MESH_KEYS if kind == "mesh" else _FOLDER_KEYS if kind == "folder" else _FOLDER_KEYS | _MESH_KEYS
    for key in sorted(set(entry) - allowed):
        problems.append(f"{label}: unknown field '{key}'{_suggest(key, allowed)}")

    name = text("name")
    if name is not None and not _NAME.match(name):
        problems.append(f"{label}: field 'name' must be letters, digits, '-', '_' or '.' (it names a directory), not {name!r}")
    provider = text("provider")
    if provider is not None:
        provider = provider.upper()
        if not _PROVIDER.match(provider):
            problems.append(f"{label}: field 'provider' must be an ODS code (3 to 6 letters/digits), not {provider!r}")
    profile_ref = text("profile")
    profile: Profile | None = None
    if profile_ref is not None:
        resolved_ref = _profile_ref(profile_ref, base)
        try:
            profile = load_profile(resolved_ref)
        except ProfileError as exc:
            problems.append(f"{label}: field 'profile': {exc}")
        profile_ref = resolved_ref
    poll = entry.get("poll_minutes", DEFAULT_POLL_MINUTES)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll <= 7 * 24 * 60:
        problems.append(f"{label}: field 'poll_minutes' must be a positive number of minutes (at most a week), not {poll!r}")
        poll = DEFAULT_POLL_MINUTES
    from_filename = entry.get("census_date_from_filename", False)
    if not isinstance(from_filename, bool):
        problems.append(f"{label}: field 'census_date_from_filename' must be true or false, not {from_filename!r}")
        from_filename = False

    if kind == "folder":
        folder = _folder_fields(entry, label, base, text, problems)
        if len(problems) > before or folder is None:
            return None
        assert name and provider and profile and profile_ref
        path, settle, marker = folder
        return FolderSource(name=name, provider_code=provider, profile=profile, profile_ref=profile_ref,
                            poll_minutes=float(poll), path=path, settle_seconds=settle,
                            require_done_marker=marker, census_date_from_filename=from_filename)
    if kind == "mesh":
        url = text("url")
        if url is not None and not url.lower().startswith(("https://", "http://")):
            problems.append(f"{label}: field 'url' must be an https:// address (http:// only for a local sandbox), not {url!r}")
        mailbox = text("mailbox")
        if mailbox is not None and not _MAILBOX.match(mailbox):
            problems.append(f"{label}: field 'mailbox' must be a MESH mailbox id such as X26ABC1, not {mailbox!r}")
        env_names: dict[str, str | None] = {}
        for key, required in (("password_env", True), ("shared_key_env", True), ("cert_env", False),
                              ("key_env", False), ("ca_env", False)):
            value = text(key, required=required)
            if value is not None and not _ENV_NAME.match(value):
                problems.append(f"{label}: field '{key}' must name an environment variable (e.g. PTL_MESH_PASSWORD), not {value!r}")
            env_names[key] = value
        if bool(env_names["cert_env"]) != bool(env_names["key_env"]):
            problems.append(f"{label}: fields 'cert_env' and 'key_env' go together (client certificate and its private key)")
        workflow_id = text("workflow_id", required=False)
        sender = text("sender", required=False)
        if len(problems) > before:
            return None
        assert name and provider and profile and profile_ref and url and mailbox
        source = MeshSource(
            name=name, provider_code=provider, profile=profile, profile_ref=profile_ref,
            poll_minutes=float(poll), url=url.rstrip("/"), mailbox=mailbox.upper(),
            password_env=str(env_names["password_env"]), shared_key_env=str(env_names["shared_key_env"]),
            cert_env=env_names["cert_env"], key_env=env_names["key_env"], ca_env=env_names["ca_env"],
            workflow_id=workflow_id, sender=sender.upper() if sender else None,
            census_date_from_filename=from_filename,
        )
        if check_secrets:
            problems.extend(f"{label}: {p}" for p in _secret_problems(source, env))
        return None if len(problems) > before else source
    return None


def _profile_ref(ref: str, base: Path) -> str:
    """Built-in names stay names; a relative profile path is relative to the sources file."""
    if not ref.lower().endswith(".toml"):
        return ref
    path = Path(ref).expanduser()
    return str(path if path.is_absolute() else (base / path))


def _folder_fields(entry: dict[str, Any], label: str, base: Path, text: Any,
                   problems: list[str]) -> tuple[Path, float, bool] | None:
    raw_path = text("path")
    path: Path | None = None
    if raw_path is not None:
        path = Path(raw_path).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_dir():
            problems.append(f"{label}: field 'path': {path} is not an existing directory "
                            "(it should hold inbox/, processed/ and failed/)")
    settle = entry.get("settle_seconds", DEFAULT_SETTLE_SECONDS)
    if isinstance(settle, bool) or not isinstance(settle, int | float) or settle < 0:
        problems.append(f"{label}: field 'settle_seconds' must be a number of seconds >= 0, not {settle!r}")
        settle = DEFAULT_SETTLE_SECONDS
    marker = entry.get("require_done_marker", False)
    if not isinstance(marker, bool):
        problems.append(f"{label}: field 'require_done_marker' must be true or false, not {marker!r}")
        marker = False
    return (path, float(settle), marker) if path is not None else None


def _secret_problems(source: MeshSource, env: Mapping[str, str]) -> list[str]:
    problems = []
    for key in ("password_env", "shared_key_env", "cert_env", "key_env", "ca_env"):
        var = getattr(source, key)
        if var is None:
            continue
        if not env.get(var):
            problems.append(f"field '{key}' names {var}, which is not set in the environment")
        elif key in ("cert_env", "key_env", "ca_env") and not Path(env[var]).is_file():
            problems.append(f"field '{key}': {var} points at {env[var]}, which is not a file")
    return problems


def _shared_mailbox_problems(sources: list[Source]) -> list[str]:
    """Two sources on one mailbox need a `sender` or `workflow_id` each, or messages would be
    taken by whichever polls first and filed under the wrong provider."""
    by_mailbox: dict[tuple[str, str], list[MeshSource]] = {}
    for source in sources:
        if isinstance(source, MeshSource):
            by_mailbox.setdefault((source.url, source.mailbox), []).append(source)
    problems = []
    for (_url, mailbox), group in by_mailbox.items():
        if len(group) < 2:
            continue
        routes = [(s.sender, s.workflow_id) for s in group]
        if any(sender is None and workflow is None for sender, workflow in routes) or len(set(routes)) < len(routes):
            names = ", ".join(f"'{s.name}'" for s in group)
            problems.append(
                f"sources {names} all poll mailbox {mailbox}: give each a distinct 'sender' "
                "(the provider's mailbox id) or 'workflow_id' so each message goes to one provider"
            )
    return problems
