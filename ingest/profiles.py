"""Column profiles: how a provider's extract maps onto the canonical PTL fields.

Built-in profiles: `wlmds` (WLMDS data-lake column names, case-insensitive) and `canonical`
(the product's own snake_case names). Local extracts use a TOML profile file::

    name = "rza-pas"
    date_format = "%d/%m/%Y"         # optional: strftime format of every date field
    delimiter = ";"                  # optional (CSV): default sniffed from the header line
    encoding = "windows-1252"        # optional (CSV): utf-8 (default, BOM allowed) | windows-1252
    sheet = "PTL"                    # optional (XLSX): default the first sheet
    [columns]                        # canonical field = "source header" (or a list of headers)
    local_patient_id = "Hospital No"
    [values.treatment_function_code] # optional translations: "source value" = "canonical value"
    "Trauma & Orthopaedics" = "110"
    [defaults]                       # optional constants for fields with no column
    provider_code = "RZB"
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.errors import ProfileError
from ptl.fields import FIELD_NAMES, FIELDS, REQUIRED_COLUMNS

BUILTIN_PROFILES = ("wlmds", "canonical")
#: Required columns that may instead be declared when the file is ingested.
DECLARABLE_FIELDS = frozenset({"provider_code", "census_date"})
_TOP_LEVEL_KEYS = {"name", "date_format", "delimiter", "encoding", "sheet", "columns", "values",
                   "defaults", "description"}
#: A profile is a few kilobytes (a long [values] translation table, a few tens); anything
#: bigger is not a profile, and is refused before it is parsed.
MAX_PROFILE_BYTES = 256 * 1024
#: The deepest a profile nests: [values.field] → "source value" = "canonical value" is 3
#: levels, a list of headers under [columns] also 3.
MAX_PROFILE_DEPTH = 4
_ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "windows-1252": "cp1252", "cp1252": "cp1252",
              "latin-1": "latin-1", "iso-8859-1": "latin-1"}


@dataclass(frozen=True)
class Profile:
    """A resolved profile: for each canonical field, the source headers that may hold it."""

    name: str
    columns: dict[str, tuple[str, ...]]
    date_format: str | None = None
    delimiter: str | None = None
    encoding: str | None = None
    sheet: str | None = None
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)

    def match_columns(self, headers: list[str]) -> dict[str, str]:
        """Map canonical field → the header present in the file (exact match first, then
        case- and space-insensitive)."""
        exact = set(headers)
        folded: dict[str, str] = {}
        for header in headers:
            folded.setdefault(_fold(header), header)
        matched: dict[str, str] = {}
        for name, candidates in self.columns.items():
            for candidate in candidates:
                if candidate in exact:
                    matched[name] = candidate
                    break
                if _fold(candidate) in folded:
                    matched[name] = folded[_fold(candidate)]
                    break
        return matched


def _fold(header: str) -> str:
    return "".join(header.lower().split()).replace("_", "")


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, FIELD_NAMES, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def builtin_profile(name: str) -> Profile:
    if name == "wlmds":
        columns = {f.name: (*f.wlmds, f.name) for f in FIELDS}
        return Profile(name="wlmds", columns=columns)
    if name == "canonical":
        return Profile(name="canonical", columns={f.name: (f.name,) for f in FIELDS})
    raise ProfileError(
        f"unknown profile '{name}': use one of {', '.join(BUILTIN_PROFILES)} or a path to a "
        ".toml profile file"
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """Resolve a built-in profile name or read and check a TOML profile file."""
    text_name = str(name_or_path)
    if text_name in BUILTIN_PROFILES:
        return builtin_profile(text_name)
    path = Path(name_or_path)
    if path.suffix.lower() != ".toml" and not path.exists():
        return builtin_profile(text_name)
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_PROFILE_BYTES + 1)
        text = content.decode("utf-8")
    except FileNotFoundError:
        raise ProfileError(f"profile file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {path} cannot be read: {exc}") from None
    return parse_profile_text(text, source=str(path))


def parse_profile_text(text: str, source: str = "profile") -> Profile:
    """Parse and check the text of a TOML profile (a file's, or one sent with an upload).

    The text is untrusted: more than `MAX_PROFILE_BYTES`, or arrays, tables or dotted keys
    nested deeper than `MAX_PROFILE_DEPTH`, is refused with a `ProfileError` like any other
    problem, never a parser's `RecursionError`."""
    # Characters first (each is at least a byte), so a huge text is refused without a copy.
    if len(text) > MAX_PROFILE_BYTES or len(text.encode("utf-8", errors="replace")) > MAX_PROFILE_BYTES:
        raise ProfileError(f"profile {source} is larger than {MAX_PROFILE_BYTES // 1024} KiB; a profile "
                           "maps columns and values, a few kilobytes")
    too_deep = ProfileError(f"profile {source} nests tables or arrays more than {MAX_PROFILE_DEPTH} "
                            "levels deep; a profile needs at most [values.field] \"value\" = \"code\"")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {source} is not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses once per level of inline arrays and tables.
        raise too_deep from None
    if _depth(raw) > MAX_PROFILE_DEPTH:
        raise too_deep
    return parse_profile(raw, source=source)


def _depth(value: Any) -> int:
    """How deeply tables and arrays nest in a parsed TOML value, without recursion (dotted
    keys nest without limit while parsing, and only then could a recursive walk overflow)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > MAX_PROFILE_DEPTH:
            break
        pending.extend((child, level + 1) for child in children)
    return deepest


def parse_profile(raw: dict[str, Any], source: str = "profile") -> Profile:
    """Check a profile's TOML content and build a `Profile`; every problem is named."""
    problems: list[str] = []
    unknown_keys = sorted(set(raw) - _TOP_LEVEL_KEYS)
    if unknown_keys:
        problems.append(
            f"unknown setting(s) {', '.join(unknown_keys)}; allowed: {', '.join(sorted(_TOP_LEVEL_KEYS))}"
        )
    columns_raw = raw.get("columns", {})
    if not isinstance(columns_raw, dict):
        problems.append("[columns] must be a table of canonical field = \"source header\"")
        columns_raw = {}
    columns: dict[str, tuple[str, ...]] = {}
    for name, header in columns_raw.items():
        if name not in FIELD_NAMES:
            problems.append(f"[columns] names unknown canonical field '{name}'{_suggest(name)}")
            continue
        if isinstance(header, str) and header.strip():
            columns[name] = (header,)
        elif isinstance(header, list) and header and all(isinstance(h, str) for h in header):
            columns[name] = tuple(header)
        else:
            problems.append(f"[columns] {name} must be a source header (text) or a list of them")
    values_raw = raw.get("values", {})
    values: dict[str, dict[str, str]] = {}
    if not isinstance(values_raw, dict):
        problems.append("[values] must hold one table per field, e.g. [values.sex]")
        values_raw = {}
    for name, table in values_raw.items():
        if name not in FIELD_NAMES:
            problems.append(f"[values.{name}] names unknown canonical field '{name}'{_suggest(name)}")
        elif not isinstance(table, dict):
            problems.append(f"[values.{name}] must be a table of \"source value\" = \"canonical value\"")
        else:
            values[name] = {str(k): str(v) for k, v in table.items()}
    defaults_raw = raw.get("defaults", {})
    defaults: dict[str, str] = {}
    if not isinstance(defaults_raw, dict):
        problems.append("[defaults] must be a table of canonical field = value")
        defaults_raw = {}
    for name, value in defaults_raw.items():
        if name not in FIELD_NAMES:
            problems.append(f"[defaults] names unknown canonical field '{name}'{_suggest(name)}")
        else:
            defaults[name] = str(value)
    missing = [
        name
        for name in REQUIRED_COLUMNS
        if name not in columns and name not in defaults and name not in DECLARABLE_FIELDS
    ]
    if missing:
        problems.append(
            "required field(s) not mapped in [columns] or [defaults]: " + ", ".join(missing)
        )
    date_format = raw.get("date_format")
    if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
        problems.append(f"date_format must be a strftime format such as \"%d/%m/%Y\", not {date_format!r}")
    encoding = raw.get("encoding")
    if encoding is not None and str(encoding).lower() not in _ENCODINGS:
        problems.append(f"encoding {encoding!r} is not supported: use utf-8 or windows-1252")
    delimiter = raw.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        problems.append(f"delimiter must be one character, not {delimiter!r}")
    sheet = raw.get("sheet")
    if sheet is not None and not isinstance(sheet, str):
        problems.append("sheet must be a sheet name (text)")
    if problems:
        raise ProfileError(f"profile {source} is not usable:\n  - " + "\n  - ".join(problems))
    return Profile(
        name=str(raw.get("name") or Path(source).stem),
        columns=columns,
        date_format=date_format,
        delimiter=delimiter,
        encoding=_ENCODINGS[str(encoding).lower()] if encoding else None,
        sheet=sheet,
        values=values,
        defaults=defaults,
    )
