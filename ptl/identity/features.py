"""Linkage features of a source identity: the normalised values records are compared on.

Owns the rules that turn a provider's identifying values into comparable ones: which NHS
numbers are usable for deterministic linking, names without accents or punctuation and with
nicknames grouped, dates of birth split for transposition checks, postcodes in `AA9A 9AA` form,
and the digest that tells a later run a record's values changed. Pure functions over frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import duckdb
import polars as pl

from ptl import codes

#: Status codes under which a valid NHS number links deterministically (01 verified). A blank
#: or unrecognised status counts as unknown, which also links when the check digit passes.
DETERMINISTIC_STATUSES: Final[frozenset[str]] = frozenset({"01"})

#: Given names that are the same name in everyday use (formal name first). A name in more than
#: one group (Sam: Samuel or Samantha) is put with the first; sex separates the rest.
NAME_GROUPS: Final[tuple[tuple[str, ...], ...]] = (
    ("WILLIAM", "BILL", "BILLY", "WILL", "WILLIE", "LIAM"),
    ("ELIZABETH", "LIZ", "LIZZIE", "BETH", "BETTY", "ELIZA", "LISA", "ELSIE"),
    ("ROBERT", "BOB", "BOBBY", "ROB", "ROBBIE", "BERT"),
    ("MARGARET", "MAGGIE", "MAG", "MEG", "PEGGY", "MARGIE", "GRETA"),
    ("JAMES", "JIM", "JIMMY", "JAMIE"),
    ("CATHERINE", "KATE", "CATH", "CATHY", "KATIE", "KAT"),
    ("KATHERINE", "KATHY", "KATH", "KATHRYN"),
    ("RICHARD", "RICK", "RICKY", "RICH", "DICK", "RICHIE"),
    ("JENNIFER", "JENNY", "JEN", "JENNI"),
    ("MICHAEL", "MIKE", "MICK", "MICKEY", "MIKEY"),
    ("SUSAN", "SUE", "SUZY", "SUSIE"),
    ("THOMAS", "TOM", "TOMMY"),
    ("PATRICIA", "PAT", "PATTY", "TRISH", "TRICIA"),
    ("CHRISTOPHER", "CHRIS", "KIT", "CHRISTINE", "CHRISTINA"),
    ("DEBORAH", "DEBBIE", "DEB", "DEBRA"),
    ("ANTHONY", "TONY", "ANT"),
    ("ALEXANDER", "ALEX", "ALEXANDRA", "LEXI", "ALEC", "SANDY", "XANDER"),
    ("JOSEPH", "JOE", "JOEY", "JOSEPHINE", "JO"),
    ("DANIEL", "DAN", "DANNY"),
    ("REBECCA", "BECKY", "BECCA", "BEX"),
    ("EDWARD", "TED", "ED", "EDDIE", "NED", "TEDDY"),
    ("VICTORIA", "VICKY", "VICKI", "TORI"),
    ("SAMUEL", "SAM", "SAMMY", "SAMANTHA"),
    ("JESSICA", "JESS", "JESSIE"),
    ("MATTHEW", "MATT", "MATTY"),
    ("ABIGAIL", "ABBY", "ABBIE", "GAIL"),
    ("NICHOLAS", "NICK", "NICKY", "NICO", "NICOLA"),
    ("BENJAMIN", "BEN", "BENNY"),
    ("ANDREW", "ANDY", "DREW"),
    ("PETER", "PETE"),
    ("DAVID", "DAVE", "DAVY"),
    ("STEPHEN", "STEVE", "STEVEN", "STEVIE"),
    ("JOHN", "JACK", "JOHNNY", "JON"),
    ("HENRY", "HARRY", "HAL"),
    ("MARY", "MOLLY", "POLLY", "MAY"),
    ("HELEN", "NELL", "ELLIE", "ELEANOR"),
    ("SARAH", "SALLY", "SADIE"),
    ("JOANNE", "JO", "JOANNA"),
    ("SOPHIE", "SOPHIA"),
    ("GEORGE", "GEORDIE"),
    ("KEVIN", "KEV"),
    ("GARY", "GAZ"),
    ("AMELIA", "MILLIE", "AMY"),
    ("OLIVIA", "LIV", "LIVVY"),
)


def _nickname_map() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for group in NAME_GROUPS:
        for name in group:
            mapping.setdefault(name, group[0])
    return mapping


NICKNAME_KEYS: Final[dict[str, str]] = _nickname_map()

_POSTCODE: Final[str] = r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$"

#: The source identity columns linking reads, with their types (as in `source_identity`).
#: Every frame features are built from is conformed to this schema first: a provider may send
#: none of the demographic fields, or send them empty, and linking must not care.
SOURCE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "id": pl.Int64(), "provider_code": pl.String(), "local_patient_id": pl.String(),
    "nhs_number": pl.String(), "nhs_number_status": pl.String(), "family_name": pl.String(),
    "given_name": pl.String(), "date_of_birth": pl.Date(), "sex": pl.String(), "postcode": pl.String(),
}
SOURCE_COLUMNS: Final[tuple[str, ...]] = tuple(SOURCE_SCHEMA)
#: The values whose change means a record must be linked again.
LINKING_VALUES: Final[tuple[str, ...]] = (
    "nhs_number", "nhs_number_status", "family_name", "given_name", "date_of_birth", "sex",
    "postcode",
)


def nhs_number_valid(number: pl.Expr) -> pl.Expr:
    """Modulus-11 check digit over a 10-digit text column (the `nhs-number` package's rule),
    by integer arithmetic on the parsed number (ten string slices are ~10× slower)."""
    well_formed = number.str.contains(r"^[0-9]{10}$")
    value = number.str.to_integer(strict=False)
    total = pl.sum_horizontal([(value // 10 ** (9 - i)) % 10 * (10 - i) for i in range(9)])
    # 11 − remainder, with 11 → 0; a result of 10 can never equal the check digit (invalid).
    expected = (11 - total % 11) % 11
    return (well_formed & (expected == value % 10)).fill_null(False)


def nhs_number_placeholder(number: pl.Expr) -> pl.Expr:
    """Numbers that pass the check digit but identify nobody (0000000000, 1234567890 …)."""
    return (
        number.is_in(sorted(codes.PLACEHOLDER_NHS_NUMBERS))
        | number.str.contains(r"^(0{10}|1{10}|2{10}|3{10}|4{10}|5{10}|6{10}|7{10}|8{10}|9{10})$")
    ).fill_null(False)


def _clean_number(number: pl.Expr) -> pl.Expr:
    return number.str.replace_all(r"[\s-]", "")


def comparable_nhs_number(number: pl.Expr) -> pl.Expr:
    """A real-looking NHS number (valid, not a placeholder) whatever its status, else null."""
    cleaned = _clean_number(number)
    return pl.when(nhs_number_valid(cleaned) & ~nhs_number_placeholder(cleaned)).then(cleaned)


def deterministic_nhs_number(number: pl.Expr, status: pl.Expr) -> pl.Expr:
    """The number records link on deterministically: valid, not a placeholder, and status
    verified (01) or unknown (blank or not a status code); null otherwise."""
    status_text = status.str.strip_chars().str.zfill(2)
    unknown = status.is_null() | (status.str.strip_chars() == "") | ~status_text.is_in(
        sorted(codes.NHS_NUMBER_STATUSES)
    )
    usable = unknown | status_text.is_in(sorted(DETERMINISTIC_STATUSES))
    return pl.when(usable).then(comparable_nhs_number(number))


def normalised_name(name: pl.Expr) -> pl.Expr:
    """Upper case, accents removed, letters only ("O'Brien" → OBRIEN, "Zoë" → ZOE)."""
    letters = (
        name.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_uppercase()
        .str.replace_all(r"[^A-Z]", "")
    )
    return pl.when(letters.str.len_chars() > 0).then(letters)


def normalised_postcode(postcode: pl.Expr) -> pl.Expr:
    """`AA9A 9AA` form (the one Splink's postcode comparison expects); null when not a postcode."""
    squashed = postcode.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")
    spaced = squashed.str.slice(0, squashed.str.len_chars() - 3) + " " + squashed.str.slice(-3)
    return pl.when(spaced.str.contains(_POSTCODE)).then(spaced)


def conformed(frame: pl.DataFrame, schema: Mapping[str, pl.DataType] = SOURCE_SCHEMA) -> pl.DataFrame:
    """`frame` with every `schema` column, of its type, first: a column absent, or typed Null
    because no row carries a value (SQLite reads it so, and so does an empty store), becomes a
    typed column of nulls. Other columns are kept after them."""
    typed = [
        (pl.col(name).cast(dtype, strict=False) if name in frame.columns else pl.lit(None, dtype=dtype))
        .alias(name)
        for name, dtype in schema.items()
    ]
    return frame.select(*typed, *[name for name in frame.columns if name not in schema])


def _per_value(frame: pl.DataFrame, column: str, rule: pl.Expr, name: str) -> pl.Series:
    """`rule` (over pl.col(column)) applied once per distinct value, then mapped back: names
    and postcodes repeat, so this does a fraction of the string work."""
    values = frame.select(pl.col(column).unique())
    mapped = values.with_columns(rule.alias(name))
    return frame.select(column).join(mapped, on=column, how="left", nulls_equal=True,
                                     maintain_order="left")[name]


def linkage_features(identities: pl.DataFrame) -> pl.DataFrame:
    """One row per source identity with the columns the linkage model and rules use.

    `identities` has `SOURCE_COLUMNS` (date_of_birth a Date). Adds nhs_key (deterministic
    number or null), nhs_number (comparable number, any status), normalised names, given_key
    (nickname group), family_initial, name_pair and initials (both names in alphabetical
    order, so a given and family name recorded the wrong way round still agree), date parts,
    postcode and sex (1/2, else null).
    Columns missing from `identities`, or null throughout, give null features.
    """
    identities = conformed(identities)
    identities = identities.with_columns(
        _per_value(identities, "given_name", normalised_name(pl.col("given_name")), "_given"),
        _per_value(identities, "family_name", normalised_name(pl.col("family_name")), "_family"),
        _per_value(identities, "postcode", normalised_postcode(pl.col("postcode")), "_postcode"),
    )
    given = pl.col("_given")
    family = pl.col("_family")
    dob = pl.col("date_of_birth")
    sex = pl.col("sex").str.strip_chars().str.to_uppercase()
    return identities.select(
        pl.col("id").cast(pl.Int64).alias("source_identity_id"),
        pl.col("provider_code"),
        deterministic_nhs_number(pl.col("nhs_number"), pl.col("nhs_number_status")).alias("nhs_key"),
        comparable_nhs_number(pl.col("nhs_number")).alias("nhs_number"),
        given.alias("given_name"),
        given.replace(NICKNAME_KEYS).alias("given_key"),
        family.alias("family_name"),
        family.str.slice(0, 1).alias("family_initial"),
        _unordered(given, family, "|").alias("name_pair"),
        _unordered(given.str.slice(0, 1), family.str.slice(0, 1), "").alias("initials"),
        dob.alias("date_of_birth"),
        dob.dt.to_string("%Y-%m-%d").alias("dob_text"),
        dob.dt.year().cast(pl.Int32).alias("birth_year"),
        dob.dt.month().cast(pl.Int8).alias("birth_month"),
        dob.dt.day().cast(pl.Int8).alias("birth_day"),
        pl.col("_postcode").alias("postcode"),
        pl.when(sex.is_in(["1", "2"])).then(sex).alias("sex"),
    )


def _unordered(first: pl.Expr, second: pl.Expr, separator: str) -> pl.Expr:
    """Two values joined in alphabetical order (null when either is null)."""
    return pl.when(first <= second).then(first + separator + second).otherwise(second + separator + first)


def values_digest(identities: pl.DataFrame) -> pl.DataFrame:
    """id → a 16-hex digest of the linking values (stable across library versions: MD5 in DuckDB)."""
    frame = conformed(identities).select(
        pl.col("id"),
        *[pl.col(c).cast(pl.String).fill_null("\x00") for c in LINKING_VALUES],
    )
    joined = " || '\x1f' || ".join(f'"{c}"' for c in LINKING_VALUES)
    connection = duckdb.connect()
    try:
        connection.register("digest_input", frame.to_arrow())
        return connection.sql(
            f"SELECT id, left(md5({joined}), 16) AS values_digest FROM digest_input"
        ).pl()
    finally:
        connection.close()
