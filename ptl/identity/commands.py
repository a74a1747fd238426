"""`ptl link`, `ptl link train|review|evaluate` and `ptl export identities`: patient identity
from the command line. Splink and the linking internals are imported inside the handlers."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from ptl.settings import Settings


def register(subparsers: Any) -> None:
    link = subparsers.add_parser(
        "link", help="link every source identity to a person (NHS number, then Splink)",
        description="Link new and changed source identities to persons; `ptl link --full` re-links "
                    "everything. Person ids stay stable; conflicts go to `ptl link review`.",
    )
    link.add_argument("--full", action="store_true", help="re-link every record, not only new and changed ones")
    link.add_argument("--json", action="store_true", help="print the run report as one JSON object")
    link.set_defaults(handler=_link)
    sub = link.add_subparsers(dest="link_command", metavar="ACTION")

    train = sub.add_parser("train", help="retrain the linkage model on the store's identities")
    train.add_argument("--out", type=Path,
                       help="model file to write (default: PTL_LINK_MODEL, else the shipped model)")
    train.set_defaults(handler=_train)

    review = sub.add_parser("review", help="the identity review list (conflicts not merged)")
    review.add_argument("--all", action="store_true", help="include resolved items")
    review.add_argument("--json", action="store_true", help="print the items as a JSON array")
    review.add_argument("--resolve", type=int, metavar="ID", help="mark item ID resolved")
    review.add_argument("--note", default="resolved by reviewer", help="why it was resolved (with --resolve)")
    review.set_defaults(handler=_review)

    evaluate = sub.add_parser("evaluate", help="pairwise precision and recall against a labelled sample")
    evaluate.add_argument("truth", type=Path,
                          help="CSV with provider_code, local_patient_id, person_key (optionally "
                               "nhs_number_usable)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--min-precision", type=float, help="exit 1 when precision is below this")
    evaluate.add_argument("--min-recall", type=float, help="exit 1 when recall is below this")
    evaluate.set_defaults(handler=_evaluate)

    identities = _export_targets(subparsers).add_parser(
        "identities", help="provider_code,local_patient_id,person_id,link_method,match_probability "
                           "for every source identity (identifiable tier)")
    identities.add_argument("out", type=Path, help="CSV file to write")
    identities.set_defaults(handler=_export_identities)


def _export_targets(subparsers: Any) -> Any:
    """The targets of `ptl export`, which other areas may add to (`ptl export parquet`): reuse
    the command and its targets when an earlier module registered them."""
    export = subparsers.choices.get("export")
    if export is None:
        export = subparsers.add_parser("export", help="write data out of the store")
    for action in export._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return export.add_subparsers(dest="export_command", metavar="WHAT", required=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    from ptl.identity import ModelError, PairBudgetExceeded, TruthError

    return ModelError, PairBudgetExceeded, TruthError


def _link(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.identity import link

    engine = open_store(settings)
    try:
        report = link(engine, settings, full=args.full)
    except _user_errors() as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    print(f"linked {report.identities:,} source identities into {report.persons:,} persons "
          f"({report.mode} run {report.run_id}, {report.seconds:.1f}s)")
    print(f"  re-linked {report.pending:,} new or changed records; {report.links_changed:,} links changed; "
          f"about {report.pairs_estimated:,} candidate pairs compared")
    print(f"  by NHS number {report.linked_nhs_number:,}  probabilistic {report.linked_probabilistic:,}  "
          f"alone {report.singletons:,}  (threshold {report.match_threshold})")
    if report.probabilistic_skipped:
        print(f"  {report.probabilistic_skipped}")
    print(f"  persons created {report.persons_created:,}  merged {report.persons_merged:,}  "
          f"split {report.persons_split:,}")
    print(f"  review list: {report.reviews_opened:,} new, {report.reviews_cleared:,} cleared, "
          f"{report.reviews_open:,} open" + ("  → ptl link review" if report.reviews_open else ""))
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.identity import ModelError, train_model
    from ptl.identity.features import SOURCE_COLUMNS, SOURCE_SCHEMA, linkage_features
    from ptl.identity.model import model_path
    from ptl.store.bulk import read_frame

    out = args.out or model_path(settings.link_model_path)
    engine = open_store(settings)

    with engine.connect() as connection:
        identities = read_frame(connection, "SELECT " + ", ".join(SOURCE_COLUMNS) + " FROM source_identity",
                                schema=SOURCE_SCHEMA)
    try:
        train_model(linkage_features(identities), out)
    except ModelError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write the model to {out} ({exc.strerror})") from None
    print(f"trained on {identities.height:,} source identities; model written to {out}")
    print("review the change (git diff) and commit it; the next `ptl link` re-links everything with it")
    return 0


def _review(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.identity import review_items
    from ptl.identity.review import resolve_review_item
    from ptl.store.engine import write_connection

    engine = open_store(settings)
    if args.resolve is not None:
        with write_connection(engine) as connection, connection.begin():
            done = resolve_review_item(connection, args.resolve, args.note, dt.datetime.now(dt.UTC))
        if not done:
            raise CommandError(f"there is no open review item {args.resolve}: see `ptl link review`")
        print(f"review item {args.resolve} resolved")
        return 0
    with engine.connect() as connection:
        items = review_items(connection, status=None if args.all else "open")
    if args.json:
        rows = items.with_columns(
            [items[c].cast(str) for c in ("created_at", "resolved_at")]).to_dicts()
        for row in rows:
            row["evidence"] = json.loads(row["evidence"])
        print(json.dumps(rows))
        return 0
    if items.height == 0:
        print("the identity review list is empty" if args.all else "no open identity review items")
        return 0
    for item in items.iter_rows(named=True):
        evidence = json.loads(item["evidence"])
        print(f"#{item['id']}  {item['status']:<8} {item['kind']}  providers {item['provider_codes']}  "
              f"persons {item['person_ids'] or '-'}")
        print(f"    {evidence.get('summary', '')}")
        records = evidence.get("records", [])
        for record in records[:10]:
            print(f"    record {record['source_identity_id']}: {record['provider_code']} "
                  f"{record['local_patient_id']} → person {record.get('person_id')}")
        if len(records) > 10:
            print(f"    … {len(records) - 10} more records (use --json)")
    print(f"{items.height:,} item(s); resolve one with `ptl link review --resolve ID --note TEXT`")
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    import polars as pl

    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.identity import TruthError, identity_export, pairwise_quality

    if not args.truth.exists():
        raise FileNotFoundError(f"{args.truth} does not exist")
    try:
        truth = pl.read_csv(args.truth, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CommandError(f"{args.truth} cannot be read as CSV ({type(exc).__name__})") from None
    engine = open_store(settings)
    with engine.connect() as connection:
        linked = identity_export(connection)
    try:
        quality = pairwise_quality(linked, truth)
    except TruthError as exc:
        raise CommandError(str(exc)) from None
    overall = quality["all"]
    if overall.records == 0:
        raise CommandError(f"no record of {args.truth} matches a linked source identity on "
                           "provider_code and local_patient_id: run `ptl link` first, or check the codes")
    if args.json:
        print(json.dumps({name: q.as_json() for name, q in quality.items()}))
    else:
        for name, q in quality.items():
            label = "all pairs" if name == "all" else "pairs with a record lacking a usable NHS number"
            print(f"{label}: precision {q.precision:.4f}  recall {q.recall:.4f}  "
                  f"({q.correct_pairs:,} correct of {q.predicted_pairs:,} linked pairs; "
                  f"{q.true_pairs:,} true pairs; {q.records:,} records)")
    below = (args.min_precision is not None and overall.precision < args.min_precision) or (
        args.min_recall is not None and overall.recall < args.min_recall)
    return 1 if below else 0


def _export_identities(args: argparse.Namespace, settings: Settings) -> int:
    from ptl.cli import CommandError
    from ptl.commands.store import open_store
    from ptl.identity import identity_export
    from ptl.spreadsheet import formula_safe_frame

    engine = open_store(settings)
    with engine.connect() as connection:
        frame = identity_export(connection)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        formula_safe_frame(frame).write_csv(args.out)  # opened in spreadsheets: no formula runs
    except OSError as exc:
        raise CommandError(f"cannot write {args.out} ({exc.strerror})") from None
    unlinked = frame["person_id"].null_count()
    print(f"wrote {frame.height:,} source identities to {args.out}"
          + (f" ({unlinked:,} not linked yet: run `ptl link`)" if unlinked else ""))
    return 0
