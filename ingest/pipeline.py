"""The ingest pipeline for one file: read → map → validate → derive → load → link.

`ingest_file` is what the CLI, the HTTP upload and the scheduled sources all call, so every
route answers the same way: loaded, refused (with the reason, nothing loaded) or duplicate.
A loaded file's new and changed identities are linked to persons as the last step of the same
job (`link_identities`), so no total counts a person waiting at two providers twice because
linking has not run; the answer says what linking did, or that it failed and what follows.

The file is read and mapped whole, what needs the whole file is settled once (provider, census
date, each date column's format, duplicate pathway keys, the postcode lookup), then rows are
validated and derived in batches that `FeedLoad` stores on its own thread while the next batch
is checked. Nothing is committed until every row has been seen: a file refused for too many
rejections, or any failure, rolls the whole load back.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from ingest.derive import derive
from ingest.errors import DeclarationError, FeedRefused
from ingest.feed_writes import loaded_feed_with_sha
from ingest.load import FeedLoad, FeedRecord, record_refused
from ingest.profiles import Profile, load_profile
from ingest.read import file_format_of, sha256_of
from ingest.untrusted import read_extract_from, reads_in_child
from ingest.validate import display_postcode, map_columns, plan_validation, validate_batch
from ptl.refdata.imd import imd_lookup
from ptl.refdata.postcodes import postcode_lookup
from ptl.settings import Settings

log = logging.getLogger("ptl.ingest")

#: Rows validated and stored per batch: small enough that storing one batch overlaps checking
#: the next for most of the file, large enough that per-batch overhead stays negligible.
BATCH_ROWS = 100_000


@dataclass
class IngestResult:
    """What happened to one file (the `--json` summary and the API answer)."""

    status: str  # loaded | refused | duplicate
    provider_code: str
    filename: str
    message: str
    feed_id: int | None = None
    census_date: dt.date | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_warned: int = 0
    became_current: bool = False
    seconds: float = 0.0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    refusal_kind: str | None = None
    #: what identity linking did after the load (None: nothing was loaded, or not asked)
    linking: LinkingOutcome | None = None

    def top_reasons(self, limit: int = 5) -> list[tuple[str, str, int]]:
        """(column, kind, count) of the commonest rejections."""
        counts: dict[tuple[str, str], int] = {}
        for item in self.rejections:
            key = (item["column"], item["kind"])
            counts[key] = counts.get(key, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return [(column, kind, n) for (column, kind), n in ranked]

    def as_json(self) -> dict[str, Any]:
        return {
            "feed_id": self.feed_id,
            "status": self.status,
            "provider_code": self.provider_code,
            "census_date": self.census_date.isoformat() if self.census_date else None,
            "filename": self.filename,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "rows_warned": self.rows_warned,
            "became_current": self.became_current,
            "seconds": round(self.seconds, 3),
            "message": self.message,
            "rejections": self.rejections,
            "warnings": self.warnings,
            "linking": self.linking.as_json() if self.linking is not None else None,
        }


@dataclass(frozen=True)
class LinkingOutcome:
    """Identity linking run as the last step of a load: `linked` (with the run's report) or
    `failed` (the feed stays loaded; `message` says what that means for the figures)."""

    status: str  # linked | failed
    message: str
    report: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "report": self.report}


#: What a failed linking run means for the figures, said wherever a load reports it.
LINKING_FAILED_CONSEQUENCE = (
    "until linking succeeds, a person waiting at more than one provider may be counted twice in "
    "system totals and the shared queue; it runs again with the next load, with the nightly "
    "housekeeping, or by hand with `ptl link`"
)


def link_identities(engine: Engine, settings: Settings, *, written: int | None = None) -> LinkingOutcome:
    """Link new and changed source identities to persons (`ptl.identity.link`) and say what
    happened. Never raises for a linking failure: the load it follows is already committed.

    `written`: how many identities the load just inserted or changed. When it wrote none and
    every identity already has a link (a weekly refresh with nobody new and nothing changed),
    a run would change nothing, so none is made: reading and comparing every identity of a
    large store costs more than the load itself. (Values changed by an earlier load whose
    linking failed are picked up by the next run: the next load that writes an identity,
    the nightly housekeeping or `ptl link`.)"""
    from ptl.identity import ModelError, PairBudgetExceeded, has_unlinked_identities, link

    try:
        if written == 0 and not has_unlinked_identities(engine):
            return LinkingOutcome("linked", "nothing new to link: the load added or changed no "
                                            "identity, and every record is linked")
        report = link(engine, settings)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, never lost, never fatal
        # Linking errors of our own say what to do and carry no patient values; any other
        # error's text might (it can quote rows), so only its type is told.
        reason = str(exc) if isinstance(exc, PairBudgetExceeded | ModelError) else type(exc).__name__
        log.error("identity linking after load failed", extra={"error": type(exc).__name__})
        return LinkingOutcome("failed", f"identity linking failed ({reason}); {LINKING_FAILED_CONSEQUENCE}")
    return LinkingOutcome(
        "linked",
        f"linked {report.pending:,} new or changed provider records: {report.identities:,} records "
        f"are {report.persons:,} people ({report.reviews_open:,} identity conflicts to review)",
        report.as_json(),
    )


def _issue_list(issues: pl.DataFrame, severity: str) -> list[dict[str, Any]]:
    return (
        issues.filter(pl.col("severity") == severity)
        .select("row", "column", "kind", "reason")
        .to_dicts()
    )


def ingest_file(
    engine: Engine,
    path: Path,
    *,
    provider_code: str,
    profile: str | Path | Profile = "wlmds",
    census_date: dt.date | None = None,
    source: str = "cli",
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
    filename: str | None = None,
    batch_rows: int = BATCH_ROWS,
    link: bool = True,
) -> IngestResult:
    """Ingest one extract for one provider, then (`link`, the default) link its new and changed
    identities. Raises `ProfileError` for a broken profile; every problem with the file itself
    is answered as a refused result, never an exception. `link=False` is for a caller that loads
    several files as one job and links once after the last (`ptl demo`), and for measuring the
    load alone."""
    settings = settings or Settings.from_env()
    started = time.perf_counter()
    provider_code = provider_code.strip().upper()
    if not re.fullmatch(r"[A-Z0-9]{3,12}", provider_code):
        raise DeclarationError(f"the provider code must be an ODS code of 3 to 12 letters and digits "
                               f"(e.g. RXX or NT4), not {provider_code[:20]!r}")
    resolved = profile if isinstance(profile, Profile) else load_profile(profile)
    name = (filename or path.name)[:200]
    say = progress or (lambda _message: None)

    record = FeedRecord(
        provider_code=provider_code, filename=name, sha256="", file_format="unknown",
        profile=resolved.name, source=source, census_date=census_date,
    )
    issues: pl.DataFrame | None = None
    load: FeedLoad | None = None
    file_warnings: list[dict[str, Any]] = []  # about the whole file (a census not on a Sunday)
    try:
        record.file_format = file_format_of(path)
        # A file from outside is parsed in a child process and never read into this one.
        in_child = reads_in_child(source, record.file_format, settings)
        try:
            data = None if in_child else path.read_bytes()
            path.open("rb").close()
        except OSError as exc:
            raise FeedRefused(f"{name}: cannot be read ({exc.strerror})", kind="unreadable") from None
        say(f"reading {name}")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1) as hashing:  # hashlib and Polars both release the GIL
            digest = hashing.submit(sha256_of, path if data is None else data)
            try:
                extract = read_extract_from(source, path, resolved, settings, data)
            finally:
                record.sha256 = digest.result()
        del data
        # One chunk per column, made while nothing else holds the parsed chunks (a CSV parses
        # into one chunk per thread-sized piece) and the file's bytes are gone: batches are
        # gathered from it, which costs several times more across many chunks, and a copy
        # made later would hold the file twice for the whole load.
        extract = replace(extract, frame=extract.frame.rechunk())
        record.read_seconds = time.perf_counter() - t0
        with engine.connect() as connection:
            earlier = loaded_feed_with_sha(connection, provider_code, record.sha256)
        if earlier is not None:
            return _duplicate(provider_code, name, earlier, started)
        # Connects (a big file into SQLite: starts its writer process) while the file is mapped.
        load = FeedLoad(engine, writer_process=extract.frame.height >= settings.sqlite_writer_process_rows)

        t0 = time.perf_counter()
        mapped = map_columns(extract.frame, resolved, filename=name, provider_code=provider_code,
                             census_date=census_date)
        record.census_date = mapped.census_date
        file_warnings = [warning.as_issue() for warning in mapped.warnings]
        load.begin(record)  # reads the provider's known identities meanwhile
        # The whole-file checks and the reference lookups run beside the patient list (Polars
        # and the database driver release the GIL): the first batch is stored sooner.
        with ThreadPoolExecutor(max_workers=1) as beside:
            planned = beside.submit(plan_validation, mapped, resolved, extract.row_offset)
            looked_up = beside.submit(_reference_lookups, engine, mapped.frame)
            patients = mapped.frame.get_column("local_patient_id").drop_nulls().unique().sort()
            load.assign_identities(patients, mapped.frame.height)
            plan = planned.result()
            postcodes, imd = looked_up.result()
        checking = time.perf_counter() - t0
        total = mapped.frame.height
        allowed = int(total * settings.max_rejected_share)
        parts: list[pl.DataFrame] = []
        # Batches are ranges of local patient id (each patient's rows in one batch, in file
        # order), so new identities reach the store in key order and both identity indexes grow
        # at their right edge batch after batch. The batches own the mapped rows from here on
        # (mapped columns share the read columns' memory where nothing was respelled or trimmed).
        source_columns = mapped.source_columns
        in_order = _patient_batches(mapped.frame, patients, batch_rows)
        del mapped
        for batch, batches, rows in in_order:
            say(f"validating and loading batch {batch + 1} of {batches} ({rows.height:,} of {total:,} rows)")
            t0 = time.perf_counter()
            checked = validate_batch(rows, source_columns, plan, extract.frame)
            parts.append(checked.issues)
            record.rows_read += checked.rows_read
            record.rows_rejected += checked.rows_rejected
            record.rows_warned += checked.rows_warned
            if record.rows_rejected > allowed:
                checking += time.perf_counter() - t0
                continue  # the file will be refused: keep counting, stop storing
            pathways = derive(checked.clean, record.census_date, postcodes, imd)
            checking += time.perf_counter() - t0
            load.add(pathways)
        issues = pl.concat(parts).sort("row", "severity", "column")  # batches go in patient order
        record.rows_loaded = record.rows_read - record.rows_rejected
        record.validate_seconds = checking  # the store works meanwhile: see FeedLoad
        share = record.rows_rejected / record.rows_read
        if share > settings.max_rejected_share:
            raise FeedRefused(
                f"{name}: {record.rows_rejected:,} of {record.rows_read:,} rows "
                f"({share:.0%}) were rejected, more than the {settings.max_rejected_share:.0%} "
                "allowed; the previous snapshot stays current. Fix the commonest problems "
                "(see the rejections) and send the file again",
                kind="too_many_rejected",
            )
        record.message = (
            f"loaded {record.rows_loaded:,} of {record.rows_read:,} rows"
            + (f"; {record.rows_rejected:,} rejected" if record.rows_rejected else "")
            + (f"; {record.rows_warned:,} with warnings" if record.rows_warned else "")
            + "".join(f"; {warning['reason']}" for warning in file_warnings)
        )
        say(f"committing {record.rows_loaded:,} pathways")
        outcome = load.commit(record, issues)
        load = None
    except FeedRefused as refusal:
        if load is not None:
            load.abort()
        record.message = str(refusal)
        record.rows_loaded = 0
        feed_id = record_refused(engine, record, issues)
        log.warning("feed refused", extra={"feed_id": feed_id, "provider": provider_code,
                                            "reason": refusal.kind, "rows_read": record.rows_read})
        return IngestResult(
            status="refused", provider_code=provider_code, filename=name, message=str(refusal),
            feed_id=feed_id, census_date=record.census_date, rows_read=record.rows_read,
            rows_rejected=record.rows_rejected, rows_warned=record.rows_warned,
            seconds=time.perf_counter() - started, refusal_kind=refusal.kind,
            rejections=_issue_list(issues, "rejected") if issues is not None else [],
            warnings=_issue_list(issues, "warning") if issues is not None else [],
        )
    except BaseException:
        if load is not None:
            load.abort()
        raise

    if outcome.duplicate:
        return _duplicate(provider_code, name, outcome.feed_id, started)
    seconds = time.perf_counter() - started
    if not outcome.became_current:
        record.message += (f"; kept as history (census {record.census_date} is older than the "
                           "provider's current snapshot)")
    log.info("feed loaded", extra={
        "feed_id": outcome.feed_id, "provider": provider_code, "census_date": str(record.census_date),
        "rows_read": record.rows_read, "rows_loaded": record.rows_loaded,
        "rows_rejected": record.rows_rejected, "rows_warned": record.rows_warned,
        "seconds": round(seconds, 3), "current": outcome.became_current,
    })
    linking = None
    if link:
        say("linking identities")
        linking = link_identities(engine, settings, written=outcome.identities_written)
    return IngestResult(
        status="loaded", provider_code=provider_code, filename=name, message=record.message,
        feed_id=outcome.feed_id, census_date=record.census_date, rows_read=record.rows_read,
        rows_loaded=record.rows_loaded, rows_rejected=record.rows_rejected,
        rows_warned=record.rows_warned, became_current=outcome.became_current,
        seconds=time.perf_counter() - started, linking=linking,
        rejections=_issue_list(issues, "rejected"), warnings=file_warnings + _issue_list(issues, "warning"),
    )


def _reference_lookups(engine: Engine, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The postcode lookup for the file's postcodes (LSOA) and the IMD lookup."""
    with engine.connect() as connection:
        in_file = frame.get_column("postcode").drop_nulls().unique().to_frame()
        postcodes = postcode_lookup(connection, in_file.select(
            display_postcode(pl.col("postcode").str.to_uppercase().str.replace_all(r"\s", ""))
        ).to_series()).unique("postcode")
        return postcodes, imd_lookup(connection)


def _patient_batches(frame: pl.DataFrame, patients: pl.Series,
                     batch_rows: int) -> Iterator[tuple[int, int, pl.DataFrame]]:
    """The rows of a mapped file in batches of about `batch_rows` (with the batch's number
    and how many batches there are): ranges of local patient id of about equal numbers of
    patients (`patients`: the distinct ids, sorted), each patient's rows in file order; rows
    without an id come last.

    The frame should be one chunk per column (`ingest_file` makes it so as soon as the file is
    read: a gather across a parsed CSV's many chunks costs several times more); each batch is
    gathered when it is asked for, so the gathering overlaps the storing of the previous batch
    instead of holding up the first one (7.5 M rows: 4 s spread over the load, against 11 s
    before it began)."""
    batches = -(-frame.height // batch_rows)
    step = max(1, -(-patients.len() // max(batches, 1)))
    bounds = patients.gather(list(range(step, patients.len(), step)))
    patient_ids = frame.get_column("local_patient_id")
    position = bounds.search_sorted(patient_ids, side="right").cast(pl.Int64)
    batch_of = pl.select(pl.when(patient_ids.is_not_null()).then(position).otherwise(bounds.len())).to_series()
    del patient_ids, position
    frame = frame.rechunk()  # a no-op when it is one chunk already
    count = bounds.len() + 1
    for number in range(count):
        rows = (batch_of == number).arg_true()
        if rows.len():
            yield number, count, frame[rows]


def _duplicate(provider_code: str, name: str, feed_id: int, started: float) -> IngestResult:
    log.info("feed already loaded", extra={"feed_id": feed_id, "provider": provider_code})
    return IngestResult(
        status="duplicate", provider_code=provider_code, filename=name, feed_id=feed_id,
        message=f"already loaded as feed {feed_id}", seconds=time.perf_counter() - started,
    )
