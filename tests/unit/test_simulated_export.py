"""The simulator's real-export mode (jobs/simulator/export.py): every planted quirk is in the
order-lines file, and the mapping finds each of them again (``marketing source check``)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from jobs.ingest.source_map import source_check
from jobs.simulator import SimulationSpec, generate
from jobs.simulator.export import ExportQuirks, order_lines_export, sku, write_order_lines_export
from tests.real_data import online_retail_mapping

SPEC = SimulationSpec(seed=4, days=30, users=400, products=120, timezone="Europe/London")
LAST = SPEC.start_date + timedelta(days=SPEC.days - 1)


@pytest.fixture(scope="module")
def world():
    return generate(SPEC)


def test_skus_are_strings_some_with_a_letter():
    assert sku(pd.Series([12, 13, 14])).tolist() == ["00012B", "00013", "00014"]


def test_every_quirk_is_planted(world):
    export, planted = order_lines_export(world, LAST)
    assert planted["credit_notes"] > 0 and export["InvoiceNo"].str.startswith("C").any()
    assert planted["guest_orders"] > 0 and planted["postage_lines"] > 0 and planted["bank_charge_lines"] > 0
    assert planted["wholesale_lines"] >= ExportQuirks().wholesale_lines  # and their credit notes, duplicates
    assert planted["giant_baskets"] == 3
    assert export.groupby("InvoiceNo")["StockCode"].nunique().max() >= 100
    assert planted["exact_duplicate_lines"] > 0
    assert export["InvoiceDate"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d").all()  # naive local times
    credit = export[export["InvoiceNo"].str.startswith("C")]
    assert (credit["Quantity"] < 0).all() and credit["CustomerID"].notna().any()


def test_the_mapping_finds_what_the_export_planted(world, make_config, tmp_path):
    planted = write_order_lines_export(world, LAST, tmp_path / "drop")
    (tmp_path / "source.yaml").write_text(online_retail_mapping(tmp_path / "drop", "*.csv"))
    config = make_config(
        source={"mapping_file": str(tmp_path / "source.yaml")},
        clean={"non_merchandise": [{"type": "shipping", "sku": "POST"}, {"type": "fee", "sku": "BANK CHARGES"}]},
    )
    result = source_check(config, sample=None)
    assert result["order_lines"]["lines"] == planted["lines"]
    assert result["orders"]["credit_notes"] == planted["credit_notes"]
    assert result["orders"]["guest_orders"] == planted["guest_orders"]
    assert result["order_lines"]["non_merchandise_lines"] == planted["postage_lines"] + planted["bank_charge_lines"]
    assert result["order_lines"]["bulk_lines"] == planted["wholesale_lines"]
    assert result["order_lines"]["exact_duplicate_lines"] == planted["exact_duplicate_lines"]
    assert result["order_lines"]["net_amount"] == pytest.approx(planted["net_amount"], abs=0.005)
    assert result["orders"]["largest_basket_products"] >= 100
    assert result["problems"] == []
