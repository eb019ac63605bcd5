"""The simulated shop as a real shop's export: one file of order lines with every quirk that
real exports have and the source tables do not (``marketing simulate --export-lines DIR``).

The columns are those of a common shop-system export (``InvoiceNo, StockCode, Description,
Quantity, InvoiceDate, UnitPrice, CustomerID, Country``), read through a mapping file like
``config/examples/online-retail.source.yaml``. The quirks, each planted so that a test can
count them:

- **string SKUs**: a product's code is its id zero-padded to five digits, with a letter after
  it for every third product (``00013``, ``00012B``);
- **guest checkouts**: a share of orders (``guest_share``) have no customer;
- **credit notes**: a cancelled or refunded order is exported as its sale and, an hour to a
  few days later, an unlinked invoice ``C`` + its number with the same lines negated;
- **non-merchandise lines**: postage (``POST``) on every order below ``free_postage_from``,
  and a ``BANK CHARGES`` line on a share of orders;
- **wholesale lines**: a few lines of 1,001 to 5,000 units;
- **giant baskets**: a few orders of 300 to 600 distinct products;
- **exact duplicate lines**: a share of lines exported twice;
- **naive local times**: ``YYYY-MM-DD HH:MM`` in the shop's time zone, no offset;
- **an orders-only shop**: no behaviour events come with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.simulator.source_db import source_state
from jobs.simulator.spec import World

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
SALE_STATUSES = ("paid", "shipped", "completed", "cancelled", "refunded")


@dataclass(frozen=True)
class ExportQuirks:
    guest_share: float = 0.25
    free_postage_from: float = 200.0
    postage: float = 18.0
    bank_charge_share: float = 0.01
    bank_charge: float = 15.0
    wholesale_lines: int = 12
    giant_baskets: int = 3
    duplicate_share: float = 0.01
    seed: int = 11


def sku(product_id: pd.Series) -> pd.Series:
    """The shop's code of a product: five digits, plus a letter for every third product."""
    digits = product_id.astype("int64").map("{:05d}".format)
    letter = product_id.astype("int64").map(lambda p: "B" if p % 3 == 0 else "")
    return digits + letter


def order_lines_export(world: World, as_of: date, quirks: ExportQuirks = ExportQuirks()) -> tuple[pd.DataFrame, dict]:
    """The export of every order placed by the end of ``as_of``, and the count of each planted
    quirk (``planted``) for tests to compare with what the pipeline finds."""
    rng = np.random.default_rng(quirks.seed)
    state = source_state(world, as_of)
    tz = world.spec.timezone
    orders = state["orders"][state["orders"]["status"].isin(SALE_STATUSES)].reset_index(drop=True)
    items = state["order_items"].merge(orders[["order_id"]], on="order_id")
    products = state["products"].set_index("product_id")
    guests = rng.random(len(orders)) < quirks.guest_share
    customer = orders["user_id"].astype("Int64").where(~guests)
    info = orders.assign(customer=customer).set_index("order_id")
    created = info["created_at"].dt.tz_convert(tz).dt.tz_localize(None)
    lines = pd.DataFrame({
        "order_id": items["order_id"], "product_id": items["product_id"].astype("int64"),
        "Quantity": items["quantity"].astype("int64"), "UnitPrice": items["unit_price"].astype(float).round(2),
    })  # fmt: skip
    # wholesale lines and giant baskets
    wholesale = rng.choice(len(lines), size=min(quirks.wholesale_lines, len(lines)), replace=False)
    lines.loc[wholesale, "Quantity"] = rng.integers(1001, 5001, size=len(wholesale))
    giants = []
    catalogue = products.index.to_numpy()
    for order_id in rng.choice(info.index.to_numpy(), size=min(quirks.giant_baskets, len(info)), replace=False):
        size = int(min(len(catalogue), rng.integers(300, 601)))
        chosen = rng.choice(catalogue, size=size, replace=False)
        giants.append(pd.DataFrame({"order_id": order_id, "product_id": chosen, "Quantity": 1,
                                    "UnitPrice": products.loc[chosen, "price"].astype(float).round(2).to_numpy()}))  # fmt: skip
    lines = pd.concat([lines, *giants], ignore_index=True).drop_duplicates(["order_id", "product_id"])
    lines["StockCode"] = sku(lines["product_id"])
    lines["Description"] = products["name"].reindex(lines["product_id"]).str.upper().to_numpy()
    # non-merchandise lines
    totals = (lines["Quantity"] * lines["UnitPrice"]).groupby(lines["order_id"]).sum()
    postage_orders = totals[totals < quirks.free_postage_from].index
    charged = info.index[rng.random(len(info)) < quirks.bank_charge_share]
    extra = pd.concat([
        pd.DataFrame({"order_id": postage_orders, "StockCode": "POST", "Description": "POSTAGE", "Quantity": 1,
                      "UnitPrice": quirks.postage}),
        pd.DataFrame({"order_id": charged, "StockCode": "BANK CHARGES", "Description": "Bank Charges",
                      "Quantity": 1, "UnitPrice": quirks.bank_charge}),
    ], ignore_index=True)  # fmt: skip
    lines = pd.concat([lines.drop(columns="product_id"), extra], ignore_index=True)
    lines["InvoiceNo"] = lines["order_id"].astype("int64").astype(str)
    lines["at"] = lines["order_id"].map(created)
    lines["CustomerID"] = lines["order_id"].map(info["customer"]).astype("Int64")
    # credit notes: cancelled and refunded orders reversed by an unlinked C-invoice
    reversed_ids = info.index[info["status"].isin(["cancelled", "refunded"])]
    credit = lines[lines["order_id"].isin(reversed_ids)].copy()
    credit["Quantity"] = -credit["Quantity"]
    credit["InvoiceNo"] = "C" + credit["InvoiceNo"]
    delay = pd.to_timedelta(rng.integers(60, 5 * 24 * 60, size=len(reversed_ids)), unit="min")
    credit["at"] = credit["at"] + credit["order_id"].map(pd.Series(delay, index=reversed_ids))
    credit = credit[credit["at"] < pd.Timestamp(as_of) + pd.Timedelta(days=1)]
    lines = pd.concat([lines, credit], ignore_index=True).sort_values(["at", "InvoiceNo"], kind="stable")
    duplicated = lines.sample(frac=quirks.duplicate_share, random_state=quirks.seed)
    lines = pd.concat([lines, duplicated]).sort_values(["at", "InvoiceNo"], kind="stable").reset_index(drop=True)
    lines["InvoiceDate"] = lines["at"].dt.strftime("%Y-%m-%d %H:%M")
    lines["Country"] = "Simland"
    export = lines[list(COLUMNS)]
    planted = {
        "lines": len(export),
        "orders": int(export["InvoiceNo"].nunique()),
        "credit_notes": int(credit["InvoiceNo"].nunique()),
        "guest_orders": int(export.loc[export["CustomerID"].isna(), "InvoiceNo"].nunique()),
        "postage_lines": int((export["StockCode"] == "POST").sum()),
        "bank_charge_lines": int((export["StockCode"] == "BANK CHARGES").sum()),
        "wholesale_lines": int((export["Quantity"].abs() > 1000).sum()),
        "giant_baskets": len(giants),
        "exact_duplicate_lines": int(export.duplicated().sum()),
        "net_amount": round(float((export["Quantity"] * export["UnitPrice"]).sum()), 2),
    }
    return export, planted


def write_order_lines_export(
    world: World, as_of: date, folder: str | Path, quirks: ExportQuirks = ExportQuirks()
) -> dict:
    """Write the export as ``order_lines.csv`` under ``folder``; returns the planted counts."""
    export, planted = order_lines_export(world, as_of, quirks)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export.to_csv(folder / "order_lines.csv", index=False)
    return {"file": str(folder / "order_lines.csv"), **planted}
