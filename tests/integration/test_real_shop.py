"""The whole pipeline on a real shop's export, read through a mapping file: the last 3.5 weeks of
the UCI Online Retail year (74,087 order lines of the shipped ``tests/data/real`` file: string
SKUs, cancellation invoices, guest checkouts, postage and fee lines, wholesale quantities, naive
London times, no behaviour logs) as one Parquet drop, one night through every stage (nightly,
customers, recommender, campaigns, report).

What must hold: every stage succeeds; the warehouse's net sales equal the export's net to the
penny; guests are in orders, KPIs and baskets but in no customer table; no non-merchandise
product is in any list (recommendations, similar items, association rules, campaign slots)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from jobs.platform.ops import warehouse_engine
from tests.real_data import ONLINE_RETAIL, online_retail_mapping

pytestmark = pytest.mark.integration

START = pd.Timestamp("2011-11-15")
NIGHT = date(2011, 12, 9)
CUSTOMERS = """\
customers:
  files: "customers/*.csv"
  columns: {customer_id: CustomerID, email: Email, consent_email: EmailOptIn, region: Country}
"""
RECOMMENDER = """\
tuning: {max_trials: 2, every_days: 7, seed: 7}
"""
NON_MERCHANDISE = [
    {"type": "shipping", "sku": "POST|DOT|C2"},
    {"type": "fee", "sku": "BANK CHARGES|AMAZONFEE|CRUK"},
    {"type": "adjustment", "sku": r"M|D|S|B|PADS|ADJUST\d*"},
    {"type": "voucher", "sku": "gift_.*"},
]


@pytest.fixture(scope="module")
def real_shop(tmp_path_factory, spark):
    from jobs.platform.stages import run_pipeline
    from tests.conftest import shop_config

    root = tmp_path_factory.mktemp("real_shop")
    lines = pd.read_parquet(ONLINE_RETAIL)
    lines = lines[lines["InvoiceDate"] >= START]
    (root / "drop").mkdir()
    lines.to_parquet(root / "drop" / "lines.parquet", index=False)
    # the shop's customer list beside the export: contact data and consent (4 in 5 opted in)
    ids = lines["CustomerID"].dropna().astype("int64").drop_duplicates().sort_values()
    (root / "customers").mkdir()
    pd.DataFrame({
        "CustomerID": ids, "Email": [f"customer{i}@example.com" for i in ids],
        "EmailOptIn": ["yes" if i % 5 else "no" for i in ids], "Country": "United Kingdom",
    }).to_csv(root / "customers" / "customers.csv", index=False)  # fmt: skip
    (root / "source.yaml").write_text(online_retail_mapping(root, "drop/*.parquet", "parquet", CUSTOMERS))
    recommender = Path(__file__).parents[2] / "config" / "recommender.yaml"
    import yaml

    settings = yaml.safe_load(recommender.read_text())
    settings["tuning"].update(yaml.safe_load(RECOMMENDER)["tuning"])
    (root / "recommender.yaml").write_text(yaml.safe_dump(settings))
    config = shop_config(
        root,
        shop={"timezone": "Europe/London", "currency": "GBP"},
        source={"mapping_file": str(root / "source.yaml"), "events": False},
        clean={"non_merchandise": NON_MERCHANDISE},
        spark={"shuffle_partitions": 4},
        recommender={"config_file": str(root / "recommender.yaml"), "registry_root": str(root / "models")},
    )
    results = run_pipeline(config, NIGHT, ["nightly", "customers", "models", "campaigns", "reports"])
    yield config, lines, results
    warehouse_engine(config).dispose()


def query(config, sql: str, **params) -> list[tuple]:
    schema = config.warehouse.schema_name
    with warehouse_engine(config).connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql.replace("{schema}", schema)), params).all()]


def test_every_stage_of_the_night_succeeds(real_shop):
    from jobs.platform.stages import resolve_stages

    config, _, results = real_shop  # a stage that fails raises; the fixture would have errored
    assert list(results) == resolve_stages(["nightly", "customers", "models", "campaigns", "reports"])
    stages = dict(query(config, "select stage, status from {schema}.ops_stage_runs where logical_date = :d", d=NIGHT))
    assert set(stages.values()) == {"success"} and set(stages) == set(results)


def test_net_sales_in_the_warehouse_equal_the_exports_net_to_the_penny(real_shop):
    config, lines, _ = real_shop
    cents = (lines["Quantity"].astype("int64") * (lines["UnitPrice"] * 100).round().astype("int64")).sum()
    export_net = Decimal(int(cents)) / 100
    [(orders, items)] = query(
        config, "select (select sum(total_amount) from {schema}.fct_orders), "
        "(select sum(line_amount) from {schema}.fct_order_items)",
    )  # fmt: skip
    assert Decimal(orders) == export_net
    assert Decimal(items) == export_net  # the lines left out (stock adjustments) are priced 0
    [(kpi_net,)] = query(config, "select sum(net_sales_amount) from {schema}.mart_kpi_daily")
    assert kpi_net is not None


def test_guests_count_in_orders_and_kpis_but_are_in_no_customer_table(real_shop):
    config, lines, _ = real_shop
    guest_orders = lines.loc[lines["CustomerID"].isna(), "InvoiceNo"].nunique()
    [(guests,)] = query(config, "select count(*) from {schema}.fct_orders where is_guest and user_id is null")
    assert guests == guest_orders > 0
    [(kpi_guests,)] = query(
        config, "select guest_order_count from {schema}.mart_kpi_daily where kpi_date = :d", d=NIGHT
    )
    assert kpi_guests is not None
    customers = lines["CustomerID"].dropna().nunique()
    [(users,)] = query(config, "select count(*) from {schema}.dim_user")
    assert users == customers
    for table in ("mart_user_rfm", "mart_user_lifecycle", "mart_customer_scores", "mart_user_profile",
                  "mart_user_tags", "mart_recommendations", "mart_campaign_targets"):  # fmt: skip
        [(total, nulls, strangers)] = query(
            config,
            f"select count(*), count(*) filter (where t.user_id is null), "
            f"count(*) filter (where t.user_id is not null and u.user_id is null) "
            f"from {{schema}}.{table} t left join {{schema}}.dim_user u on u.user_id = t.user_id",
        )
        assert (nulls, strangers) == (0, 0), table
    [(profiled,)] = query(config, "select count(*) from {schema}.mart_user_profile where snapshot_date = :d", d=NIGHT)
    assert profiled == customers


def test_an_orders_only_shop_has_no_event_checks_or_behaviour_tags_and_says_so_once(real_shop):
    from jobs.platform.lake import read_json, reports_storage

    config, _, _ = real_shop
    events_checks = query(config, "select check_name, is_success from {schema}.ops_data_quality "
                                  "where dataset = 'events'")  # fmt: skip
    assert events_checks == [("late_files_beyond_lookback", True)]  # collect's own; no contract check
    tags = {r[0] for r in query(config, "select distinct tag from {schema}.mart_user_tags")}
    assert "engagement" not in tags and "loyalty" in tags
    summary = read_json(reports_storage(config), f"quality/{NIGHT}/summary.json")
    assert summary["warnings"] == [] and "no behaviour data" in summary["datasets"]["events"]["skipped"]
    html = reports_storage(config).read_bytes(f"nightly/date={NIGHT}/report.html").decode()
    assert html.count("No behaviour data") == 1 and "Guest orders" in html and "Credit notes" in html
    [(active, paying)] = query(
        config, "select active_customer_count, paying_customer_count from {schema}.mart_kpi_daily where kpi_date = :d",
        d=NIGHT,
    )  # fmt: skip
    assert active == paying > 0


def test_no_list_holds_a_non_merchandise_product(real_shop):
    config, _, _ = real_shop
    non_goods = {r[0] for r in query(config, "select product_id from {schema}.dim_product where not is_merchandise")}
    skus = {r[0] for r in query(config, "select sku from {schema}.dim_product where not is_merchandise")}
    assert {"POST", "DOT", "M", "BANK CHARGES"} <= skus
    listed: dict[str, set[int]] = {
        "recommendations": {r[0] for r in query(config, "select product_id from {schema}.mart_recommendations")},
        "similar": {r[0] for r in query(config, "select similar_product_id from {schema}.mart_similar_items")}
        | {r[0] for r in query(config, "select product_id from {schema}.mart_similar_items")},
        "rules": {r[0] for r in query(config, "select consequent_product_id from {schema}.mart_product_associations")}
        | {int(p) for r in query(config, "select antecedent_product_ids from {schema}.mart_product_associations")
           for p in r[0].strip("[]").replace(" ", "").split(",") if p},
        "campaign slots": {p for r in query(config, "select product_id_1, product_id_2, product_id_3 "
                                            "from {schema}.mart_campaign_targets") for p in r if p is not None},
    }  # fmt: skip
    assert listed["rules"], "a real year's last weeks have cross-sell rules"
    assert listed["campaign slots"], "customers with consent get campaign messages with products"
    for name, products in listed.items():
        assert not products & non_goods, name
