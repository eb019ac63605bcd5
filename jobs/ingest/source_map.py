"""A shop's own data mapped onto the input interface: export files or its own SQL schema.

``source.mapping_file`` (e.g. ``config/source.yaml``) says where the shop's data is and which of
its columns is which interface field. Before collect extracts, :func:`materialise` reads every
mapped file (CSV or Parquet, in a local folder or under ``s3://``) or query, and writes the
interface's tables (users, products, orders, order_items, suppressions) into a staging SQLite
database under ``state_root``; collect then extracts from it exactly as from a shop database,
incrementally by ``updated_at``. One file of order lines (order, product, quantity, price,
time, optional customer) is enough: orders, products and customers are derived from it.

What the mapping handles (docs/source-interface.md has the whole table):

- **string keys**: SKUs like ``85123A``, invoice numbers like ``C536379``. A key declared
  ``string`` (the default) becomes a surrogate: a 53-bit keyed digest of the entity and the
  value, the same every night, in every backfill and on every machine; the value itself is
  kept (``sku``, ``order_number``, ``customer_code``). Two values with one digest stop the run.
- **guests**: a line without a customer is a guest order (``user_id`` null).
- **credit notes**: an order is a return when its number matches ``returns.order_pattern``,
  its type column says so, or its total is below 0; a credit note's lines priced below 0 with
  quantities above 0 (a write-off) get both signs turned, the amount unchanged.
- **naive local times**: timestamps without an offset are in ``timezone`` (default the shop's),
  daylight-saving days included (an hour that happens twice is taken the first time, an hour
  that does not exist moves forward); a date without a time of day is local midnight.
- **exact duplicate lines** are counted and reported, and kept (real exports repeat a scanned
  line); the clean stage reconciles every line.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jobs.platform.config import PipelineConfig
from jobs.platform.errors import ConfigError, InputFileError
from jobs.platform.storage import Storage, open_storage

log = logging.getLogger(__name__)

STAGING_DB = "source/staging.sqlite"
# Interface fields an order-lines entity maps (left) and whether it must
LINE_FIELDS = {
    "order_id": True, "product_id": True, "quantity": True, "unit_price": True, "ordered_at": True,
    "customer_id": False, "line_no": False, "product_name": False, "category": False, "product_type": False,
    "channel": False, "status": False, "order_type": False, "original_order_id": False, "region": False,
    "city": False,
}  # fmt: skip
CUSTOMER_FIELDS = {
    "customer_id": True, "signup_at": False, "email": False, "phone": False, "gender": False, "birth_year": False,
    "region": False, "city": False, "consent_email": False, "consent_sms": False, "consent_push": False,
    "updated_at": False,
}  # fmt: skip
PRODUCT_FIELDS = {
    "product_id": True, "product_name": False, "category": False, "category_l2": False, "brand": False,
    "price": False, "is_active": False, "product_type": False, "updated_at": False,
}  # fmt: skip
SUPPRESSION_FIELDS = {"customer_id": True, "channel": True, "reason": True, "suppressed_at": True}
FIELDS = {"order_lines": LINE_FIELDS, "customers": CUSTOMER_FIELDS, "products": PRODUCT_FIELDS,
          "suppressions": SUPPRESSION_FIELDS}  # fmt: skip
SURROGATE_BITS = 53  # exact in a JavaScript number and a double: portals and spreadsheets keep it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityMap(_Strict):
    """Where one entity is (``files``: a glob under the root; ``table`` or ``query``: SQL) and
    which source column is which interface field; ``values`` are constants for fields the source
    has no column for (e.g. ``channel: store``)."""

    files: str | None = None
    table: str | None = None
    query: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Returns(_Strict):
    """How a credit note is recognised besides a total below 0: its order number matches
    ``order_pattern`` (a regular expression, e.g. ``^C`` for invoice numbers like C536379)."""

    order_pattern: str | None = None


class Keys(_Strict):
    """``string`` keys become stable surrogates (the value is kept beside it); ``integer`` keys
    are used as they are."""

    customer: Literal["string", "integer"] = "string"
    product: Literal["string", "integer"] = "string"
    order: Literal["string", "integer"] = "string"


class CsvOptions(_Strict):
    delimiter: str = ","
    encoding: str = "utf-8"


class SourceMapping(_Strict):
    kind: Literal["files", "sql"]
    root: str | None = None  # files: a local folder or s3://bucket/prefix
    url: str | None = None  # sql: the shop database (default: source.url)
    format: Literal["csv", "parquet"] = "csv"
    csv: CsvOptions = CsvOptions()
    timezone: str | None = None  # of naive timestamps; default shop.timezone
    keys: Keys = Keys()
    returns: Returns = Returns()
    order_lines: EntityMap
    customers: EntityMap | None = None
    products: EntityMap | None = None
    suppressions: EntityMap | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        from zoneinfo import ZoneInfo

        if value is not None:
            try:
                ZoneInfo(value)
            except Exception:  # noqa: BLE001 - any lookup failure is an unknown zone
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _entities_complete(self) -> SourceMapping:
        if self.kind == "files" and not self.root:
            raise ValueError("root: a files source needs the folder (or s3:// prefix) its files are in")
        for name, fields in FIELDS.items():
            entity = getattr(self, name)
            if entity is None:
                continue
            where = [w for w in ("files", "table", "query") if getattr(entity, w)]
            allowed = ("files",) if self.kind == "files" else ("table", "query")
            if len(where) != 1 or where[0] not in allowed:
                raise ValueError(f"{name}: give exactly one of {' or '.join(allowed)} for a {self.kind} source")
            unknown = sorted(set(entity.columns) | set(entity.values) - set(fields))
            unknown = [f for f in unknown if f not in fields]
            if unknown:
                raise ValueError(f"{name}: unknown field {unknown[0]!r}; the fields are {', '.join(fields)}")
            missing = [f for f, required in fields.items() if required and f not in entity.columns]
            if missing:
                raise ValueError(f"{name}.columns: map the required field {missing[0]!r} to a source column")
        return self


def load_mapping(path: str | Path) -> SourceMapping:
    """The mapping file, validated; a problem is a one-line ConfigError naming file and key."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"source.mapping_file: {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        mapping = SourceMapping.model_validate(values or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {error['msg'].removeprefix('Value error, ')}") from None
    if mapping.root and "://" not in mapping.root:  # a relative folder is relative to the project root
        from jobs.platform.config import PROJECT_ROOT, _resolve_path

        mapping = mapping.model_copy(update={"root": _resolve_path(mapping.root, PROJECT_ROOT)})
    return mapping


def surrogate(entity: str, values: pd.Series) -> pd.Series:
    """Stable positive 53-bit ids of string keys (null stays null)."""

    def one(value):
        if value is None or pd.isna(value):
            return None
        digest = hashlib.blake2b(f"{entity}\x1f{value}".encode(), digest_size=8, person=b"mkt-key").digest()
        return (int.from_bytes(digest, "big") >> (64 - SURROGATE_BITS)) or 1

    return values.map(one).astype("Int64")


def _key(mapping: SourceMapping, entity: str, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(id, natural key text)`` of a key column: blank is null; ``string`` keys become
    surrogates (a collision is an error), ``integer`` keys are parsed (a non-integer is null)."""
    if pd.api.types.is_float_dtype(values) and (values.dropna() == values.dropna().round()).all():
        values = values.astype("Int64")  # 17850.0 (an id column with gaps, read as float) is 17850
    text = values.astype("string").str.strip()
    text = text.where(text != "", pd.NA)
    if getattr(mapping.keys, entity) == "integer":
        number = pd.to_numeric(text, errors="coerce")
        whole = number.where(number == number.round())
        return whole.astype("Int64"), text
    ids = surrogate(entity, text)
    pairs = pd.DataFrame({"id": ids, "key": text}).dropna().drop_duplicates()
    clash = pairs[pairs["id"].duplicated(keep=False)]
    if len(clash):
        a, b = clash["key"].iloc[0], clash["key"].iloc[1]
        raise InputFileError(f"{entity} keys {a!r} and {b!r} map to one surrogate id; declare keys.{entity}: integer")
    return ids, text


def local_times(values: pd.Series, tz: str) -> pd.Series:
    """UTC (naive) of timestamps: naive ones are local to ``tz`` (an hour that happens twice is
    taken the first time, one that does not exist moves forward); a bare date is local midnight."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="mixed", dayfirst=False)
    if getattr(parsed.dt, "tz", None) is None:
        first = np.ones(len(parsed), dtype=bool)
        parsed = parsed.dt.tz_localize(tz, ambiguous=first, nonexistent="shift_forward")
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None)


@dataclass
class Materialised:
    """What :func:`materialise` wrote, and what it found on the way."""

    url: str
    rows: dict[str, int]
    facts: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _read(mapping: SourceMapping, config: PipelineConfig, entity: EntityMap, sample: int | None) -> pd.DataFrame:
    """The entity's rows as strings (files) or as the database types them (SQL)."""
    if mapping.kind == "sql":
        import sqlalchemy as sa

        engine = sa.create_engine(mapping.url or config.source.url)
        query = entity.query or f"select * from {sa.table(entity.table).name}"
        with engine.connect() as conn:
            frame = pd.read_sql_query(sa.text(query), conn, dtype=None)
        engine.dispose()
        return frame.head(sample) if sample else frame
    storage = open_storage(mapping.root, config.storage.s3_endpoint_url, config.storage.s3_region)
    keys = sorted(info.key for info in storage.list("") if fnmatch.fnmatch(info.key, entity.files))
    if not keys:
        raise InputFileError(f"{storage.uri()}: no file matches {entity.files!r}")
    frames, left = [], sample
    for key in keys:
        frames.append(_read_file(mapping, storage, key, left))
        if sample:
            left = sample - sum(len(f) for f in frames)
            if left <= 0:
                break
    return pd.concat(frames, ignore_index=True)


def _read_file(mapping: SourceMapping, storage: Storage, key: str, rows: int | None) -> pd.DataFrame:
    data = storage.read_bytes(key)
    suffix = key.rsplit(".", 1)[-1].lower()  # a file's own suffix wins over the mapping's format
    fmt = {"parquet": "parquet", "csv": "csv", "txt": "csv", "tsv": "csv"}.get(suffix, mapping.format)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(data))
            return frame.head(rows) if rows else frame
        return pd.read_csv(
            io.BytesIO(data), dtype=str, keep_default_na=False, sep=mapping.csv.delimiter,
            encoding=mapping.csv.encoding, nrows=rows,
        )  # fmt: skip
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise InputFileError(f"{storage.uri(key)}: cannot read as {fmt}: {' '.join(str(exc).split())}") from None


def _mapped(frame: pd.DataFrame, entity: EntityMap, fields: dict[str, bool], where: str) -> pd.DataFrame:
    """The interface fields of ``frame`` by the mapping (a missing column is schema drift)."""
    missing = [column for column in entity.columns.values() if column not in frame.columns]
    if missing:
        raise InputFileError(
            f"{where}: column {missing[0]!r} (mapped in the mapping file) is not in the source; it has "
            f"{', '.join(map(str, frame.columns[:12]))}"
        )
    out = pd.DataFrame({name: frame[column] for name, column in entity.columns.items()}, index=frame.index)
    for name, value in entity.values.items():
        if name not in out:
            out[name] = value
    for name in fields:
        if name not in out:
            out[name] = None
    return out


def _flag(values: pd.Series) -> pd.Series:
    """Yes/no values as booleans (true/yes/y/1/t, false/no/n/0/f, any case); anything else null."""
    text = values.astype("string").str.strip().str.lower()
    return text.map({"true": True, "yes": True, "y": True, "1": True, "t": True,
                     "false": False, "no": False, "n": False, "0": False, "f": False}).astype("boolean")  # fmt: skip


def _number(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.replace(r"[,\s£$€¥]", "", regex=True)
    return pd.to_numeric(text, errors="coerce")


def order_lines_to_tables(mapping: SourceMapping, lines: pd.DataFrame, tz: str) -> tuple[dict, dict]:
    """The interface's tables derived from mapped order lines, and facts about them."""
    facts: dict[str, object] = {"lines": len(lines)}
    facts["exact_duplicate_lines"] = int(lines.duplicated(keep="first").sum())
    lines = lines.reset_index(drop=True)
    order_id, order_number = _key(mapping, "order", lines["order_id"])
    product_id, sku = _key(mapping, "product", lines["product_id"])
    customer_id, customer_code = _key(mapping, "customer", lines["customer_id"])
    at = local_times(lines["ordered_at"], tz)
    quantity = _number(lines["quantity"])
    price = _number(lines["unit_price"]).round(2)
    work = pd.DataFrame({
        "order_id": order_id, "order_number": order_number, "product_id": product_id, "sku": sku,
        "user_id": customer_id, "customer_code": customer_code, "at": at, "quantity": quantity, "price": price,
        "name": lines["product_name"], "category": lines["category"], "product_type": lines["product_type"],
        "channel": lines["channel"], "status": lines["status"], "order_type": lines["order_type"],
        "original": lines["original_order_id"], "region": lines["region"], "city": lines["city"],
        "line_no": pd.to_numeric(lines["line_no"], errors="coerce"),
    })  # fmt: skip
    facts["guest_lines"] = int(work["user_id"].isna().sum())
    facts["time_range"] = [str(work["at"].min()), str(work["at"].max())] if len(work) else None
    work["amount"] = (work["quantity"] * work["price"]).round(2)
    # orders: one per order number; a credit note by pattern, type column, or a total below 0
    grouped = work.groupby("order_id", dropna=True, sort=False)
    orders = grouped.agg(
        order_number=("order_number", "first"), user_id=("user_id", "first"), created_at=("at", "min"),
        updated_at=("at", "max"), total_amount=("amount", "sum"), channel=("channel", "first"),
        status=("status", "first"), order_type=("order_type", "first"), original=("original", "first"),
    ).reset_index()  # fmt: skip
    is_return = orders["total_amount"] < 0
    if mapping.returns.order_pattern:
        is_return |= orders["order_number"].str.contains(mapping.returns.order_pattern, regex=True, na=False)
    given = orders["order_type"].astype("string").str.strip().str.lower()
    is_return |= given.isin(["return", "credit", "credit_note", "refund", "cancellation"])
    orders["order_type"] = np.where(is_return, "return", "sale")
    returns = set(orders.loc[is_return, "order_id"])
    # a write-off on a credit note (quantity above 0, price below 0): both signs turned
    flip = work["order_id"].isin(returns) & (work["quantity"] > 0) & (work["price"] < 0)
    work.loc[flip, ["quantity", "price"]] = work.loc[flip, ["quantity", "price"]] * -1
    facts["write_off_lines_turned"] = int(flip.sum())
    facts["orders"] = len(orders)
    facts["returns"] = len(returns)
    facts["guest_orders"] = int(orders["user_id"].isna().sum())
    original_id, _ = _key(mapping, "order", orders["original"])
    orders = orders.assign(
        status=orders["status"].astype("string").str.strip().str.lower().fillna("completed").replace("", "completed"),
        channel=orders["channel"].astype("string").str.strip().fillna("web").replace("", "web"),
        total_amount=orders["total_amount"].round(2),
        original_order_id=original_id,
        paid_at=orders["created_at"],
        discount_amount=0.0,
        coupon_code=None,
    )
    # lines: numbered within their order in file order where the source has no line number
    work["line_no"] = work["line_no"].fillna(work.groupby("order_id").cumcount() + 1).astype("Int64")
    items = work.assign(unit_price=work["price"], updated_at=work["at"])[
        ["order_id", "line_no", "product_id", "quantity", "unit_price", "updated_at"]
    ]
    # products: the latest name and price seen, the category and type if mapped
    by_time = work.dropna(subset=["product_id"]).sort_values("at", kind="stable")
    latest = by_time.groupby("product_id").agg(
        sku=("sku", "last"), name=("name", "last"), category_l1=("category", "last"),
        product_type=("product_type", "last"), updated_at=("at", "max"),
    )  # fmt: skip
    positive = by_time[by_time["price"] > 0].groupby("product_id")["price"].last()
    products = latest.assign(
        price=positive.reindex(latest.index).fillna(0.0),
        name=latest["name"].astype("string").str.strip().fillna(latest["sku"]),
        category_l1=latest["category_l1"].astype("string").str.strip().fillna("uncategorised").replace("", "uncategorised"),
        category_l2=None, brand=None, is_active=True,
    ).reset_index()  # fmt: skip
    products["name"] = products["name"].where(products["name"] != "", products["sku"])
    # customers seen in the lines: signed up at their first order
    known = work.dropna(subset=["user_id"]).sort_values("at", kind="stable")
    users = known.groupby("user_id").agg(
        customer_code=("customer_code", "first"), signup_at=("at", "min"), region=("region", "last"),
        city=("city", "last"),
    ).reset_index()  # fmt: skip
    users["updated_at"] = users["signup_at"]
    tables = {"orders": orders, "order_items": items, "products": products, "users": users}
    return tables, facts


def _customers(mapping: SourceMapping, frame: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Mapped customer rows in the interface's shape (a blank id is left for clean to refuse)."""
    user_id, code = _key(mapping, "customer", frame["customer_id"])
    signup = local_times(frame["signup_at"], tz) if frame["signup_at"].notna().any() else pd.NaT
    updated = local_times(frame["updated_at"], tz) if frame["updated_at"].notna().any() else signup
    out = pd.DataFrame({
        "user_id": user_id, "customer_code": code, "signup_at": signup, "gender": frame["gender"],
        "birth_year": pd.to_numeric(frame["birth_year"], errors="coerce").astype("Int64"), "region": frame["region"],
        "city": frame["city"], "email": frame["email"], "phone": frame["phone"],
        "consent_email": _flag(frame["consent_email"]), "consent_sms": _flag(frame["consent_sms"]),
        "consent_push": _flag(frame["consent_push"]), "updated_at": updated,
    })  # fmt: skip
    return out


def _products(mapping: SourceMapping, frame: pd.DataFrame, tz: str) -> pd.DataFrame:
    product_id, sku = _key(mapping, "product", frame["product_id"])
    updated = local_times(frame["updated_at"], tz) if frame["updated_at"].notna().any() else pd.NaT
    return pd.DataFrame({
        "product_id": product_id, "sku": sku, "name": frame["product_name"], "category_l1": frame["category"],
        "category_l2": frame["category_l2"], "brand": frame["brand"], "price": _number(frame["price"]),
        "is_active": _flag(frame["is_active"]), "product_type": frame["product_type"], "updated_at": updated,
    })  # fmt: skip


def _combine(listed: pd.DataFrame | None, derived: pd.DataFrame, key: str) -> pd.DataFrame:
    """The shop's own rows of an entity, plus the ones only the order lines name (those keep
    what the lines say: a customer first seen in an order signs up with it). A listed row without
    its own time takes the derived one."""
    if listed is None:
        return derived
    listed = listed.set_index(key)
    derived = derived.set_index(key)
    for column in ("signup_at", "updated_at"):
        if column in listed and column in derived:
            listed[column] = listed[column].fillna(derived[column].reindex(listed.index))
    extra = derived.loc[~derived.index.isin(listed.index)]
    return pd.concat([listed, extra]).reset_index()


INTERFACE = {
    "users": {
        "user_id": "bigint", "customer_code": "varchar", "signup_at": "timestamp", "gender": "varchar",
        "birth_year": "bigint", "region": "varchar", "city": "varchar", "email": "varchar", "phone": "varchar",
        "consent_email": "boolean", "consent_sms": "boolean", "consent_push": "boolean", "updated_at": "timestamp",
    },
    "products": {
        "product_id": "bigint", "sku": "varchar", "name": "varchar", "category_l1": "varchar",
        "category_l2": "varchar", "brand": "varchar", "price": "decimal(12,2)", "is_active": "boolean",
        "product_type": "varchar", "updated_at": "timestamp",
    },
    "orders": {
        "order_id": "bigint", "order_number": "varchar", "user_id": "bigint", "status": "varchar",
        "created_at": "timestamp", "paid_at": "timestamp", "total_amount": "decimal(14,2)",
        "discount_amount": "decimal(14,2)", "coupon_code": "varchar", "channel": "varchar", "order_type": "varchar",
        "original_order_id": "bigint", "updated_at": "timestamp",
    },
    "order_items": {
        "order_id": "bigint", "line_no": "bigint", "product_id": "bigint", "quantity": "bigint",
        "unit_price": "decimal(12,2)", "updated_at": "timestamp",
    },
    "suppressions": {
        "user_id": "bigint", "channel": "varchar", "reason": "varchar", "suppressed_at": "timestamp",
        "updated_at": "timestamp",
    },
}  # fmt: skip


def mapped_tables(
    config: PipelineConfig, mapping: SourceMapping, sample: int | None = None, lines: pd.DataFrame | None = None
) -> tuple[dict, dict]:
    """The interface's tables from the shop's mapped data (the first ``sample`` rows of each
    entity with ``sample``; ``lines``: the mapped order lines when the caller read them already),
    and facts about what was read."""
    tz = mapping.timezone or config.shop.timezone
    if lines is None:
        lines = _mapped(_read(mapping, config, mapping.order_lines, sample), mapping.order_lines, LINE_FIELDS,
                        "order_lines")  # fmt: skip
    tables, facts = order_lines_to_tables(mapping, lines, tz)
    if mapping.customers is not None:
        listed = _mapped(_read(mapping, config, mapping.customers, sample), mapping.customers, CUSTOMER_FIELDS,
                         "customers")  # fmt: skip
        tables["users"] = _combine(_customers(mapping, listed, tz), tables["users"], "user_id")
    if mapping.products is not None:
        listed = _mapped(_read(mapping, config, mapping.products, sample), mapping.products, PRODUCT_FIELDS, "products")
        tables["products"] = _combine(_products(mapping, listed, tz), tables["products"], "product_id")
    if mapping.suppressions is not None:
        listed = _mapped(_read(mapping, config, mapping.suppressions, sample), mapping.suppressions,
                         SUPPRESSION_FIELDS, "suppressions")  # fmt: skip
        when = local_times(listed["suppressed_at"], tz)
        tables["suppressions"] = pd.DataFrame({
            "user_id": _key(mapping, "customer", listed["customer_id"])[0], "channel": listed["channel"],
            "reason": listed["reason"], "suppressed_at": when, "updated_at": when,
        })  # fmt: skip
    else:
        tables["suppressions"] = pd.DataFrame({name: [] for name in INTERFACE["suppressions"]})
    shaped = {}
    for table, columns in INTERFACE.items():
        frame = tables[table]
        shaped[table] = pd.DataFrame({name: frame[name] if name in frame else None for name in columns})
    return shaped, facts


def staging_url(config: PipelineConfig) -> str:
    return f"sqlite:///{Path(config.storage.state_root) / STAGING_DB}"


SQL_TYPES = {"bigint": "BigInteger", "varchar": "Text", "timestamp": "DateTime", "boolean": "Boolean",
             "decimal(12,2)": ("Numeric", 12, 2), "decimal(14,2)": ("Numeric", 14, 2)}  # fmt: skip


def _sql_type(kind: str):
    import sqlalchemy as sa

    spec = SQL_TYPES[kind]
    return getattr(sa, spec[0])(*spec[1:]) if isinstance(spec, tuple) else getattr(sa, spec)()


def materialise(config: PipelineConfig, mapping: SourceMapping | None = None) -> Materialised:
    """Write the interface's tables from the shop's mapped data into the staging database (a
    SQLite file under ``state_root``), replacing them whole in one transaction; return its URL
    and counts, each read back."""
    import sqlalchemy as sa

    mapping = mapping or load_mapping(config.source.mapping_file)
    tables, facts = mapped_tables(config, mapping)
    path = Path(config.storage.state_root) / STAGING_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(staging_url(config))
    rows = {}
    with engine.begin() as conn:
        for table, columns in INTERFACE.items():
            frame = tables[table]
            types = {name: _sql_type(kind) for name, kind in columns.items()}
            frame.to_sql(table, conn, if_exists="replace", index=False, dtype=types, chunksize=50_000)
            rows[table] = conn.execute(sa.text(f"select count(*) from {table}")).scalar_one()
            if rows[table] != len(frame):
                raise InputFileError(f"{path}: {table} holds {rows[table]:,} rows of {len(frame):,} written")
    engine.dispose()
    log.info("source mapping: %s", {**rows, **{k: v for k, v in facts.items() if k != "time_range"}})
    return Materialised(staging_url(config), rows, facts)


def _problems(tables: dict[str, pd.DataFrame], raw_lines: pd.DataFrame, limit: int) -> list[str]:
    """The first problems a night would quarantine or flag, one line each."""
    from jobs.platform.interface import CHANNEL_ALIASES, CHANNELS, ORDER_STATUSES

    found: list[str] = []
    items, orders = tables["order_items"], tables["orders"]
    checks = [
        (raw_lines["order_id"].isna(), "order_lines: {n:,} line(s) without an order number (quarantined)"),
        (raw_lines["product_id"].isna(), "order_lines: {n:,} line(s) without a product (quarantined)"),
        (raw_lines["at"].isna(), "order_lines: {n:,} line(s) whose time is not a date or timestamp (quarantined)"),
        (raw_lines["quantity"].isna(), "order_lines: {n:,} line(s) whose quantity is not a number (quarantined)"),
        (raw_lines["price"].isna(), "order_lines: {n:,} line(s) whose price is not a number (quarantined)"),
        (items["quantity"] == 0, "order_lines: {n:,} line(s) of 0 units (quarantined as invalid_value)"),
    ]
    sales = set(orders.loc[orders["order_type"] == "sale", "order_id"])
    checks.append((
        items["order_id"].isin(sales) & (items["quantity"] < 0),
        "order_lines: {n:,} line(s) below 0 units on a sale (stock adjustments? quarantined as invalid_value)",
    ))  # fmt: skip
    status = orders["status"].astype("string").str.lower()
    checks.append((~status.isin(ORDER_STATUSES), "orders: {n:,} order(s) with a status outside "
                   f"{', '.join(ORDER_STATUSES)} (quarantined; map `status` or set values.status)"))  # fmt: skip
    channel = orders["channel"].astype("string").str.strip().str.lower().replace(CHANNEL_ALIASES)
    checks.append((~channel.isin(CHANNELS), "orders: {n:,} order(s) with a channel outside "
                   f"{', '.join(CHANNELS)} (quarantined; set values.channel)"))  # fmt: skip
    for mask, text in checks:
        count = int(mask.fillna(False).sum())
        if count:
            found.append(text.format(n=count))
    return found[:limit]


def source_check(config: PipelineConfig, sample: int | None = 100_000, limit: int = 10) -> dict:
    """What a night would load from the mapped source, from a sample, writing nothing: per
    entity the rows and keys, guests, credit notes, non-merchandise products, the time range,
    and the first problems."""
    import re

    if not config.source.mapping_file:
        raise ConfigError("source.mapping_file: not set; `source check` reads the shop's data through a mapping file")
    mapping = load_mapping(config.source.mapping_file)
    tz = mapping.timezone or config.shop.timezone
    raw = _read(mapping, config, mapping.order_lines, sample)
    lines = _mapped(raw, mapping.order_lines, LINE_FIELDS, "order_lines")
    tables, facts = mapped_tables(config, mapping, sample, lines)  # the lines are read once
    parsed = pd.DataFrame({
        "order_id": lines["order_id"].astype("string").str.strip().replace("", pd.NA),
        "product_id": lines["product_id"].astype("string").str.strip().replace("", pd.NA),
        "at": local_times(lines["ordered_at"], tz), "quantity": _number(lines["quantity"]),
        "price": _number(lines["unit_price"]),
    })  # fmt: skip
    products = tables["products"]
    kind = products["product_type"].astype("string").str.strip().str.lower().fillna("merchandise")
    for rule in config.clean.non_merchandise:
        for column, pattern in (("sku", rule.sku), ("name", rule.name)):
            if pattern:
                hit = products[column].astype("string").str.strip().str.fullmatch(pattern, flags=re.IGNORECASE)
                kind = kind.where(~(hit.fillna(False) & (kind == "merchandise")), rule.type)
    orders, items = tables["orders"], tables["order_items"]
    goods = set(products.loc[kind == "merchandise", "product_id"])
    non_goods = products.loc[kind != "merchandise"]
    return {
        "mapping_file": config.source.mapping_file,
        "source": mapping.root if mapping.kind == "files" else "sql",
        "sample_lines": len(lines),
        "timezone": tz,
        "time_range_utc": facts["time_range"],
        "order_lines": {
            "lines": len(items), "exact_duplicate_lines": facts["exact_duplicate_lines"],
            "guest_lines": facts["guest_lines"], "credit_note_lines": int((items["quantity"] < 0).sum()),
            "non_merchandise_lines": int((~items["product_id"].isin(goods)).sum()),
            "bulk_lines": int((items["quantity"].abs() > config.clean.large_item_quantity).sum()),
            "zero_price_lines": int((items["unit_price"] == 0).sum()),
            "net_amount": round(float((items["quantity"] * items["unit_price"]).sum()), 2),
        },
        "orders": {
            "orders": len(orders), "sales": int((orders["order_type"] == "sale").sum()),
            "credit_notes": int((orders["order_type"] == "return").sum()), "guest_orders": facts["guest_orders"],
            "largest_basket_products": int(items.groupby("order_id")["product_id"].nunique().max() or 0),
            "write_off_lines_turned": facts["write_off_lines_turned"],
        },
        "products": {
            "products": len(products), "non_merchandise": int(len(non_goods)),
            "non_merchandise_examples": [f"{r.sku} ({r.name})" for r in non_goods.head(8).itertuples()],
        },
        "customers": {"customers": len(tables["users"]), "with_customer_code": int(tables["users"]["customer_code"].notna().sum())},
        "problems": _problems(tables, parsed, limit),
    }  # fmt: skip


def describe_check(result: dict) -> str:
    """``source check``'s result as a few readable lines."""
    lines = [f"source {result['source']} through {result['mapping_file']} (times in {result['timezone']})",
             f"sample: {result['sample_lines']:,} order lines; time range (UTC) {result['time_range_utc']}"]  # fmt: skip
    for entity in ("order_lines", "orders", "products", "customers"):
        facts = ", ".join(
            f"{name.replace('_', ' ')} {value:,}" if isinstance(value, int) else f"{name.replace('_', ' ')} {value}"
            for name, value in result[entity].items()
        )
        lines.append(f"{entity}: {facts}")
    lines.append("problems:" if result["problems"] else "problems: none found in the sample")
    lines.extend(f"  - {problem}" for problem in result["problems"])
    return "\n".join(lines)
