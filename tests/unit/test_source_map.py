"""The mapped source (jobs/ingest/source_map.py) on tiny hand-made exports: string keys and their
surrogates, naive local times on daylight-saving days, orders, credit notes, guests, products and
customers derived from one file of order lines, the mapping file's one-line errors, the staging
database read back, a CSV export in a real S3 API server, and ``marketing source check``."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from jobs.ingest import source_map
from jobs.ingest.source_map import (
    SourceMapping,
    load_mapping,
    local_times,
    materialise,
    order_lines_to_tables,
    source_check,
    surrogate,
)
from jobs.platform.errors import ConfigError, InputFileError

HEADER = "Invoice,SKU,Description,Qty,When,Price,Customer,Country"
EXPORT = """\
536365,85123A,WHITE HANGING HEART,6,2011-03-27 00:30,2.55,17850,United Kingdom
536365,POST,POSTAGE,1,2011-03-27 00:30,18.00,17850,United Kingdom
536366,85123A,WHITE HANGING HEART,2,2011-03-27 01:30,2.95,,United Kingdom
536366,85123A,WHITE HANGING HEART,2,2011-03-27 01:30,2.95,,United Kingdom
C536367,85123A,WHITE HANGING HEART,-6,2011-10-30 01:30,2.55,17850,United Kingdom
A536368,B,Adjust bad debt,1,2011-10-30,-11062.06,,United Kingdom
536369,22423,REGENCY CAKESTAND,10000,2011-10-31 09:00,10.95,12346,Norway
"""
MAPPING = """\
kind: files
root: {root}
format: csv
timezone: Europe/London
returns: {{order_pattern: "^C"}}
order_lines:
  files: "drop/*.csv"
  columns: {{order_id: Invoice, product_id: SKU, product_name: Description, quantity: Qty, ordered_at: When,
             unit_price: Price, customer_id: Customer, region: Country}}
  values: {{channel: web, status: completed}}
"""


def mapping(root: str = "/tmp/none", **changes) -> SourceMapping:
    import yaml

    values = yaml.safe_load(MAPPING.format(root=root))
    values.update(changes)
    return SourceMapping.model_validate(values)


def lines_frame() -> pd.DataFrame:
    import io

    raw = pd.read_csv(io.StringIO(HEADER + "\n" + EXPORT), dtype=str, keep_default_na=False)
    columns = mapping().order_lines.columns
    frame = pd.DataFrame({field: raw[column] for field, column in columns.items()})
    for field in source_map.LINE_FIELDS:
        frame[field] = frame.get(field, None)
    frame["channel"], frame["status"] = "web", "completed"
    return frame


def test_string_keys_get_stable_53_bit_surrogates_and_blank_stays_null():
    values = pd.Series(["85123A", "85123a", " ", None, "85123A"])
    ids = surrogate("product", values.str.strip().replace("", None))
    assert ids[0] == ids[4] != ids[1]  # the same value, the same id; keys are case-sensitive
    assert pd.isna(ids[2]) and pd.isna(ids[3])
    assert 0 < int(ids[0]) < 2**53
    assert int(ids[0]) == int(surrogate("product", pd.Series(["85123A"]))[0])  # every run, every machine
    assert int(ids[0]) != int(surrogate("order", pd.Series(["85123A"]))[0])  # per entity


def test_two_keys_with_one_surrogate_stop_the_run(monkeypatch):
    monkeypatch.setattr(source_map, "SURROGATE_BITS", 1)  # every key collides
    with pytest.raises(InputFileError, match=r"product keys '\w+' and '\w+' map to one surrogate id"):
        source_map._key(mapping(), "product", pd.Series(["85123A", "22423"]))


def test_float_ids_with_gaps_are_whole_numbers_and_integer_keys_are_used_as_they_are():
    m = mapping(keys={"customer": "integer"})
    ids, codes = source_map._key(m, "customer", pd.Series([17850.0, None, 12346.0]))
    assert ids.tolist()[0] == 17850 and pd.isna(ids[1]) and codes.tolist()[2] == "12346"


def test_naive_local_times_across_both_daylight_saving_changes_and_bare_dates():
    got = local_times(
        pd.Series(["2011-03-27 00:30", "2011-03-27 01:30", "2011-10-30 01:30", "2011-10-30", "not a time"]),
        "Europe/London",
    )
    assert got.tolist()[:4] == [
        datetime(2011, 3, 27, 0, 30),  # GMT
        datetime(2011, 3, 27, 1, 0),  # 01:30 does not exist that night: moved forward to 02:00 BST
        datetime(2011, 10, 30, 0, 30),  # happens twice: the first time, BST
        datetime(2011, 10, 30, 0, 0) - pd.Timedelta(hours=1),  # local midnight (BST)
    ]
    assert pd.isna(got[4])


def test_orders_products_and_customers_are_derived_from_order_lines():
    tables, facts = order_lines_to_tables(mapping(), lines_frame(), "Europe/London")
    orders = tables["orders"].set_index("order_number")
    assert orders.loc["C536367", "order_type"] == "return"  # by the invoice pattern
    assert orders.loc["A536368", "order_type"] == "return"  # by its total below 0
    assert orders.loc["536365", "order_type"] == "sale"
    assert orders.loc["536365", "total_amount"] == pytest.approx(6 * 2.55 + 18.00)
    assert pd.isna(orders.loc["536366", "user_id"])  # a guest
    items = tables["order_items"]
    write_off = items[items["order_id"] == orders.loc["A536368", "order_id"]].iloc[0]
    assert (write_off["quantity"], write_off["unit_price"]) == (-1, 11062.06)  # both signs turned
    assert items.groupby("order_id")["line_no"].apply(list).loc[orders.loc["536366", "order_id"]] == [1, 2]
    products = tables["products"].set_index("sku")
    assert products.loc["85123A", "name"] == "WHITE HANGING HEART"
    assert products.loc["85123A", "price"] == pytest.approx(2.55)  # the latest price above 0
    users = tables["users"].set_index("customer_code")
    assert sorted(users.index) == ["12346", "17850"]
    assert users.loc["17850", "signup_at"] == datetime(2011, 3, 27, 0, 30)  # the first order
    assert facts["exact_duplicate_lines"] == 1 and facts["guest_lines"] == 3
    assert facts["write_off_lines_turned"] == 1 and facts["returns"] == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: files\norder_lines: {files: a.csv, columns: {order_id: x}}\n", "root: a files source needs"),
        (MAPPING.format(root="/x").replace("product_id: SKU, ", ""), "map the required field 'product_id'"),
        (MAPPING.format(root="/x").replace("region: Country", "colour: Country"), "unknown field 'colour'"),
        (MAPPING.format(root="/x").replace('files: "drop/*.csv"', "table: lines"), "give exactly one of files"),
        (MAPPING.format(root="/x").replace("Europe/London", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        ("kind: [\n", "not valid YAML"),
    ],
)
def test_a_bad_mapping_file_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "source.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_mapping(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _configured(make_config, tmp_path, root: str, **storage):
    path = tmp_path / "source.yaml"
    path.write_text(MAPPING.format(root=root))
    return make_config(
        source={"mapping_file": str(path)},
        storage=storage,
        clean={"non_merchandise": [{"type": "shipping", "sku": "POST"}, {"type": "adjustment", "sku": "B"}]},
    )


def test_materialise_writes_the_interface_tables_and_reads_them_back(make_config, tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "2011.csv").write_text(HEADER + "\n" + EXPORT)
    config = _configured(make_config, tmp_path, str(tmp_path))
    result = materialise(config)
    engine = sa.create_engine(result.url)
    with engine.connect() as conn:
        net = conn.execute(sa.text("select sum(quantity * unit_price) from order_items")).scalar_one()
        guests = conn.execute(sa.text("select count(*) from orders where user_id is null")).scalar_one()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("orders")}
    engine.dispose()
    assert result.rows == {"users": 2, "products": 4, "orders": 5, "order_items": 7, "suppressions": 0}
    assert float(net) == pytest.approx(6 * 2.55 + 18 + 2 * 2 * 2.95 - 6 * 2.55 - 11062.06 + 10000 * 10.95)
    assert guests == 2  # 536366 and the write-off
    assert {"order_number", "order_type", "original_order_id"} <= columns


def test_a_csv_export_in_s3_is_read_through_the_same_mapping(make_config, tmp_path, s3_server, aws_env):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket="shop-exports")
    s3.put_object(Bucket="shop-exports", Key="nightly/drop/2011.csv", Body=(HEADER + "\n" + EXPORT).encode())
    config = _configured(make_config, tmp_path, "s3://shop-exports/nightly", s3_endpoint_url=s3_server)
    assert materialise(config).rows["order_items"] == 7


def test_source_check_reports_what_a_night_would_load_and_writes_nothing(make_config, tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "2011.csv").write_text(HEADER + "\n" + EXPORT + "536370,85123A,?,-3,2011-11-01 10:00,0,,UK\n")
    config = _configured(make_config, tmp_path, str(tmp_path))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = source_check(config)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert result["order_lines"]["lines"] == 8 and result["order_lines"]["guest_lines"] == 4
    assert result["orders"]["credit_notes"] == 2 and result["orders"]["guest_orders"] == 3
    assert result["products"]["non_merchandise"] == 2
    assert result["order_lines"]["bulk_lines"] == 1
    assert result["problems"] == [
        "order_lines: 1 line(s) below 0 units on a sale (stock adjustments? quarantined as invalid_value)"
    ]


def test_source_check_without_a_mapping_file_names_the_key(make_config):
    with pytest.raises(ConfigError, match=r"^source.mapping_file: not set"):
        source_check(make_config())


def test_the_worked_example_mapping_is_valid():
    from jobs.platform.config import PROJECT_ROOT, load_config

    config = load_config(PROJECT_ROOT / "config/examples/online-retail.pipeline.yaml", environ={})
    mapping = load_mapping(config.source.mapping_file)
    assert mapping.order_lines.columns["order_id"] == "InvoiceNo"
    assert (PROJECT_ROOT / "tests/data/real/online_retail.parquet").exists()
    assert textwrap.dedent(mapping.root).endswith("tests/data/real")


def test_a_shops_own_schema_is_mapped_with_a_select(make_config, tmp_path):
    """kind sql: the shop's own tables (here SQLite), one entity a table and one a query."""
    import io

    shop = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    raw = pd.read_csv(io.StringIO(HEADER + "\n" + EXPORT), dtype=str, keep_default_na=False)
    with shop.begin() as conn:
        raw.to_sql("invoice_lines", conn, index=False)
        conn.execute(sa.text("create table members (id text, mail text, optin text)"))
        conn.execute(sa.text("insert into members values ('17850', 'a@example.com', 'Y'), ('99999', null, 'N')"))
    shop.dispose()
    (tmp_path / "source.yaml").write_text(
        textwrap.dedent(f"""\
        kind: sql
        url: sqlite:///{tmp_path / "shop.db"}
        timezone: Europe/London
        returns: {{order_pattern: "^C"}}
        order_lines:
          query: "select * from invoice_lines where Invoice not like 'A%'"
          columns: {{order_id: Invoice, product_id: SKU, quantity: Qty, unit_price: Price, ordered_at: When,
                     customer_id: Customer}}
        customers:
          table: members
          columns: {{customer_id: id, email: mail, consent_email: optin}}
        """)
    )
    config = make_config(source={"mapping_file": str(tmp_path / "source.yaml")})
    result = materialise(config)
    assert result.rows["order_items"] == 6 and result.rows["orders"] == 4  # the write-off left out by the query
    engine = sa.create_engine(result.url)
    with engine.connect() as conn:
        users = conn.execute(sa.text("select customer_code, email, consent_email, signup_at from users "
                                     "order by customer_code")).all()  # fmt: skip
    engine.dispose()
    # a listed customer keeps its own data and takes its first order as signup; 99999 never ordered
    assert [(u[0], u[1], bool(u[2]) if u[2] is not None else None) for u in users] == [
        ("12346", None, None), ("17850", "a@example.com", True), ("99999", None, False)]  # fmt: skip
    assert users[1][3] is not None and users[2][3] is None
