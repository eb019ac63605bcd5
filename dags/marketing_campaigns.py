"""
### Campaigns

Runs when the customers DAG has published a date's profile (`mart_user_profile`) **and** the
recommender DAG has finished that date (published, refused by its gate, or skipped: the live lists are
used), for that business date, from published data only (`config/campaigns.yaml`):

1. **associations** – cross-sell rules from order baskets (Spark, tested for significance) → **`mart_product_associations`**;
2. **allocate** – each campaign's audience, suppressed by reason (consent, suppression list, global holdout),
   one campaign per customer and day by priority, the 7-day contact cap, and the deterministic holdout
   split → **`mart_campaign_targets`**, **`mart_campaign_funnel`**, **`fct_campaign_contacts`**;
3. **export** – the target group of each campaign as CSV and Parquet with a manifest, contact fields for
   consented customers only, to `storage.exports_root`;
4. **measure** – target vs control for every cohort whose attribution window closed (lift with intervals,
   CUPED, sample-ratio check) and the global holdout → **`mart_campaign_results`**;
5. **kpis** – the shop's daily KPIs and traffic by source → **`mart_kpi_daily`**, **`mart_traffic_daily`**
   (changes day over day and week over week in the view `v_kpi_daily`);
6. **report** – the nightly report of the date (HTML with plots, and JSON) under
   `storage.reports_root/nightly/date=D/`, once everything above has run (whatever its outcome).

Trigger by hand for a date with `--conf '{"business_date": "2026-10-30"}'`.
"""

from __future__ import annotations

from airflow.sdk import Asset, TriggerRule, dag, get_current_context, task

from jobs.platform.config import load_config
from jobs.platform.orchestration import (
    announce,
    asset_uri,
    business_date_param,
    business_dates_from_assets,
    dag_defaults,
    run_stage_for_dates,
)

CONFIG = load_config()
PROFILE = Asset(asset_uri(CONFIG, "mart_user_profile"), group="marketing_marts")
RECOMMENDER_FINISHED = Asset(
    name="marketing_recommender_finished", uri="marketing://recommender/finished", group="marketing_models"
)
ASSOCIATION_ASSETS = [Asset(asset_uri(CONFIG, "mart_product_associations"), group="marketing_campaigns")]
CAMPAIGN_ASSETS = [
    Asset(asset_uri(CONFIG, table), group="marketing_campaigns")
    for table in ("mart_campaign_targets", "mart_campaign_funnel", "fct_campaign_contacts")
]

KPI_ASSETS = [
    Asset(asset_uri(CONFIG, table), group="marketing_campaigns") for table in ("mart_kpi_daily", "mart_traffic_daily")
]
RESULT_ASSETS = [Asset(asset_uri(CONFIG, "mart_campaign_results"), group="marketing_campaigns")]


def _run(stage: str) -> dict:
    days = business_dates_from_assets(get_current_context(), CONFIG.shop.timezone)
    return run_stage_for_dates(CONFIG, stage, days)


@dag(
    dag_id="marketing_campaigns",
    schedule=(PROFILE & RECOMMENDER_FINISHED),
    tags=["marketing", "campaigns", "activation"],
    doc_md=__doc__,
    params=business_date_param("Allocate and export campaigns for this shop-local date."),
    **dag_defaults(CONFIG),
)
def marketing_campaigns():
    @task(outlets=ASSOCIATION_ASSETS)
    def associations() -> dict:
        return announce(ASSOCIATION_ASSETS, _run("associations"))

    @task(outlets=CAMPAIGN_ASSETS)
    def allocate() -> dict:
        return announce(CAMPAIGN_ASSETS, _run("allocate"))

    @task
    def export() -> dict:
        return _run("export")

    @task(outlets=RESULT_ASSETS)
    def measure() -> dict:
        return announce(RESULT_ASSETS, _run("measure"))

    @task(outlets=KPI_ASSETS)
    def kpis() -> dict:
        return announce(KPI_ASSETS, _run("kpis"))

    @task(trigger_rule=TriggerRule.ALL_DONE)  # a failed campaign step is in the report, not a reason to skip it
    def report() -> dict:
        return _run("report")

    [associations() >> allocate() >> export(), measure(), kpis()] >> report()


marketing_campaigns()
