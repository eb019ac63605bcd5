"""
### Product recommender

Runs whenever the customers DAG has published a date's lifecycle stages (the `mart_user_lifecycle`
Asset), for that business date, from published data only (`config/recommender.yaml`):

1. **interactions** – views, favourites, carts and purchases of the last `lookback_days`, weighted,
   capped and decayed;
2. **tune and evaluate** – ALS (Spark MLlib), EASE, item-kNN and recent popularity, each tried on a
   validation window cut from the training side; the best on validation is the candidate; every
   model's best values are measured on the most recent `holdout_days` (nDCG, recall, precision,
   MAP, hit rate, coverage, diversity, novelty, popularity bias; by lifecycle stage and new vs
   returning) → **`mart_model_evaluation`**;
3. **gate** – a learned candidate is published only if it beats the strongest cheap baseline on
   evidence (paired bootstrap interval of per-customer nDCG differences above 0, at least
   `min_eval_users` customers), else that baseline is; and what is published must not be more than
   `max_drop_vs_production` below the live model. **A refused model fails this task with the reason**
   (and alerts); the previous lists stay live. Too little data: the task is *skipped* and says why;
4. **publish** – **`mart_recommendations`** (top N per customer, reason code = the published model or a
   marked popularity fallback), **`mart_similar_items`** and **`mart_buy_again`** (products to buy
   again, by the method best on the validation window's repeat purchases); the version is registered (`marketing models
   list`) and can be promoted or rolled back by command.

Whatever the gate decided (published, refused or skipped), the final **`finished`** task announces the
date on the `marketing_recommender_finished` Asset, so the campaigns DAG runs every night with the
lists that are live.

Trigger by hand for a date with `--conf '{"business_date": "2026-10-30"}'`.
"""

from __future__ import annotations

from airflow.sdk import Asset, TriggerRule, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from jobs.platform.config import load_config
from jobs.platform.orchestration import (
    announce,
    asset_uri,
    business_date_from_assets,
    business_date_param,
    dag_defaults,
    run_stage,
)

CONFIG = load_config()
LIFECYCLE = Asset(asset_uri(CONFIG, "mart_user_lifecycle"), group="marketing_marts")
MODEL_ASSETS = [
    Asset(asset_uri(CONFIG, table), group="marketing_models")
    for table in ("mart_recommendations", "mart_similar_items", "mart_buy_again", "mart_model_evaluation")
]
FINISHED = Asset(
    name="marketing_recommender_finished", uri="marketing://recommender/finished", group="marketing_models"
)


@dag(
    dag_id="marketing_recommender",
    schedule=[LIFECYCLE],
    tags=["marketing", "recommender", "models"],
    doc_md=__doc__,
    params=business_date_param(
        "Train, evaluate and publish for this shop-local date (default: the date the customers DAG published)."
    ),
    **dag_defaults(CONFIG),
)
def marketing_recommender():
    @task(outlets=MODEL_ASSETS)
    def recommender() -> dict:
        day = business_date_from_assets(get_current_context(), CONFIG.shop.timezone)
        summary = run_stage(CONFIG, "recommender", day)
        if summary.get("status") == "skipped":
            raise AirflowSkipException(f"recommender {day}: {summary['reason']}")
        return announce(MODEL_ASSETS, summary)

    @task(outlets=[FINISHED], trigger_rule=TriggerRule.ALL_DONE)
    def finished() -> dict:
        day = business_date_from_assets(get_current_context(), CONFIG.shop.timezone)
        return announce([FINISHED], {"business_date": day.isoformat()})

    recommender() >> finished()


marketing_recommender()
