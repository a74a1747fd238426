"""MESH sources: extracts that providers send to a MESH mailbox (NHS England's `mesh-client`).

For each message in the mailbox (optionally only one `workflow_id`, or one `sender` mailbox):
download it to VAR_DIR/mesh/SOURCE/, ingest it, record a receipt, and only then acknowledge it
(acknowledging deletes it from MESH). The order is the guarantee: a message is acknowledged
only after its feed is durably recorded, loaded or refused with the reason. A crash anywhere
before the acknowledgement leaves the message in the mailbox; MESH delivers it again and either
the receipt (same message id) or the feed's sha256 (same content, new message id) makes the
second pass a no-op that acknowledges it.

Credentials come from the environment variables the source names (`password_env`,
`shared_key_env`, `cert_env`/`key_env`/`ca_env` for mutual TLS), never from the file or code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ingest.errors import DeclarationError, ProfileError
from ingest.pipeline import ingest_file
from ingest.sources.config import MeshSource, SourcesConfigError, declared_census_date
from ingest.sources.outcome import FileOutcome, SourceUnavailable
from ingest.sources.state import receipt_for_message, record_receipt
from ptl.settings import Settings

log = logging.getLogger("ptl.sources")

#: MESH asks clients to handshake (announce themselves) once a day, not on every poll.
HANDSHAKE_EVERY_SECONDS = 24 * 3600
_last_handshake: dict[str, float] = {}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SNIFFED_SUFFIX = ((b"PK\x03\x04", ".xlsx"), (b"PAR1", ".parquet"))


def mesh_client(source: MeshSource, environ: Mapping[str, str] | None = None) -> Any:
    """A `MeshClient` for the source, with credentials read from the environment now."""
    from mesh_client import MeshClient

    try:
        secrets = source.secrets(environ)
    except SourcesConfigError as exc:
        raise SourceUnavailable(str(exc)) from None
    cert = (str(secrets.cert), str(secrets.key)) if secrets.cert and secrets.key else None
    return MeshClient(
        source.url, source.mailbox, secrets.password, shared_key=secrets.shared_key.encode(),
        cert=cert, verify=str(secrets.ca) if secrets.ca else None,
        # One quick retry for a blip; anything longer is the next poll's job.
        max_retries=1, retry_backoff_factor=0.5, timeout=300, application_name="shared-ptl",
    )


def poll_mesh(engine: Engine, source: MeshSource, settings: Settings, outcomes: list[FileOutcome], *,
              environ: Mapping[str, str] | None = None,
              before_acknowledge: Callable[[str], None] | None = None) -> int:
    """Take every message for this source from the mailbox, appending what became of each to
    `outcomes`; returns how many messages are left waiting. `before_acknowledge` runs after a
    message's feed is recorded and before it is acknowledged (tests use it to simulate a crash).
    Raises `SourceUnavailable` when the mailbox or the store cannot be reached."""
    import requests
    from mesh_client import MeshError

    staging = settings.var_dir / "mesh" / source.name
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceUnavailable(f"cannot create the download directory {staging} ({exc.strerror})") from None
    waiting = 0
    try:
        with mesh_client(source, environ) as client:
            _handshake_when_due(client, source)
            message_ids = list(client.iterate_message_ids(workflow_filter=source.workflow_id))
            for message_id in message_ids:
                outcome = _take_message(engine, client, source, message_id, staging, settings,
                                        before_acknowledge)
                if outcome is None:
                    continue  # another source's message (sender filter)
                if outcome.status == "error":
                    waiting += 1
                outcomes.append(outcome)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = ("; check the password, shared key and client certificate"
                if status in (401, 403) else "")
        raise SourceUnavailable(f"MESH mailbox {source.mailbox} refused the request "
                                f"(HTTP {status}){hint}") from None
    except (requests.RequestException, MeshError) as exc:
        raise SourceUnavailable(f"MESH mailbox {source.mailbox} at {source.url} is unreachable "
                                f"({type(exc).__name__}); messages stay in the mailbox") from None
    return waiting


def _handshake_when_due(client: Any, source: MeshSource) -> None:
    key = f"{source.url}|{source.mailbox}"
    if time.monotonic() - _last_handshake.get(key, -HANDSHAKE_EVERY_SECONDS) >= HANDSHAKE_EVERY_SECONDS:
        client.handshake()
        _last_handshake[key] = time.monotonic()


def received_name(filename: str | None, message_id: str, head: bytes) -> str:
    """A safe file name for the message: the sender's name without any directories, or the
    message id with a suffix sniffed from the content (CSV unless it looks like XLSX/Parquet)."""
    if filename:
        safe = _UNSAFE.sub("_", Path(filename.replace("\\", "/")).name).strip("._")
        if safe:
            return safe
    suffix = next((s for magic, s in _SNIFFED_SUFFIX if head.startswith(magic)), ".csv")
    return f"{message_id}{suffix}"


def _download(message: Any, staging: Path, message_id: str) -> tuple[Path, str, bytes]:
    """Stream the message to a staging file; returns (path, sha256, first bytes)."""
    digest = hashlib.sha256()
    partial = staging / f".{message_id}.part"
    head = b""
    with partial.open("wb") as handle:
        while True:
            block = message.read(1 << 20)
            if not block:
                break
            if not head:
                head = block[:8]
            digest.update(block)
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    return partial, digest.hexdigest(), head


def _take_message(engine: Engine, client: Any, source: MeshSource, message_id: str, staging: Path,
                  settings: Settings, before_acknowledge: Callable[[str], None] | None) -> FileOutcome | None:
    started = time.perf_counter()
    message = client.retrieve_message(message_id)
    try:
        if source.sender and (message.sender or "").upper() != source.sender:
            return None
        if (message.message_type or "").upper() == "REPORT":
            # A delivery report about something this mailbox sent: nothing to ingest.
            client.acknowledge_message(message_id)
            log.warning("MESH report message acknowledged", extra={
                "source": source.name, "message_id": message_id})
            return FileOutcome(name=message_id, status="skipped", message_id=message_id,
                               message="MESH delivery report (not an extract); acknowledged")
        try:
            receipt = receipt_for_message(engine, source.name, message_id)
        except SQLAlchemyError as exc:
            raise SourceUnavailable(f"the store is unreachable ({type(exc).__name__}); "
                                    "messages stay in the mailbox") from None
        if receipt is not None:
            # Ingested before, but the acknowledgement was lost (crash or network): finish the job.
            client.acknowledge_message(message_id)
            log.info("MESH message acknowledged after redelivery", extra={
                "source": source.name, "message_id": message_id, "feed_id": receipt.feed_id})
            return FileOutcome(name=receipt.received_name, status="duplicate", message_id=message_id,
                               feed_id=receipt.feed_id,
                               message=f"already received as feed {receipt.feed_id} ({receipt.outcome}); acknowledged")
        partial, sha256, head = _download(message, staging, message_id)
    finally:
        message.close()

    name = received_name(message.filename, message_id, head)
    staged = staging / f"{message_id}{Path(name).suffix or '.csv'}"
    os.replace(partial, staged)
    try:
        result = ingest_file(engine, staged, provider_code=source.provider_code, profile=source.profile,
                             census_date=declared_census_date(source, name), source="mesh",
                             settings=settings, filename=name)
        record_receipt(engine, source_name=source.name, received_name=name, outcome=result.status,
                       feed_id=result.feed_id, sha256=sha256, message=result.message,
                       message_id=message_id)
    except SQLAlchemyError as exc:
        raise SourceUnavailable(f"the store is unreachable ({type(exc).__name__}); "
                                "messages stay in the mailbox") from None
    except ProfileError as exc:
        raise SourceUnavailable(f"profile {source.profile_ref} is not usable: {exc}") from None
    except DeclarationError as exc:
        raise SourceUnavailable(f"source {source.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the others
        log.error("MESH message could not be ingested", extra={
            "source": source.name, "provider": source.provider_code, "message_id": message_id,
            "error": type(exc).__name__})
        return FileOutcome(name=name, status="error", message_id=message_id,
                           message=f"ingest failed unexpectedly ({type(exc).__name__}); left in the "
                                   "mailbox, retried on the next poll")
    if before_acknowledge is not None:
        before_acknowledge(message_id)
    client.acknowledge_message(message_id)
    staged.unlink(missing_ok=True)
    log.info("MESH message taken", extra={
        "source": source.name, "provider": source.provider_code, "message_id": message_id,
        "file": name, "status": result.status, "feed_id": result.feed_id,
        "rows_loaded": result.rows_loaded, "rows_rejected": result.rows_rejected,
        "seconds": round(time.perf_counter() - started, 3)})
    return FileOutcome(name=name, status=result.status, message=result.message, feed_id=result.feed_id,
                       message_id=message_id, rows_loaded=result.rows_loaded,
                       rows_rejected=result.rows_rejected,
                       linking=result.linking.status if result.linking is not None else None)
