"""The nightly recommender on the simulator: the tuned ALS at least doubles popularity's
nDCG@10 on the temporal holdout, and its lists find the tastes the simulator planted (which
no published column reveals) far more often than chance.

The shop: 60 days, 6,000 users, 400 products; every user has a concentrated mix of eight latent
tastes that steers which products they look at and put in the cart (``jobs/simulator/``).
The evaluation is the nightly one (``jobs.recommender.stage.evaluate_holdout``) with the configured
tuning budget; ``benchmarks/bench_recommender_quality.py`` prints the same study in full.
"""

from __future__ import annotations

from jobs.simulator import SimulationSpec

SPEC = SimulationSpec(seed=11, days=60, users=6000, products=400)


def test_tuned_als_doubles_popularity_and_finds_planted_tastes(make_config, spark) -> None:
    from jobs.recommender.settings import load_recommender
    from jobs.recommender.study import study

    config = make_config()
    settings = load_recommender(config.recommender.config_file)
    summary, evaluation = study(config, SPEC, settings)

    assert summary["test"]["users_evaluated"] >= 500  # a holdout big enough to mean something
    als_trials = [trial for trial in evaluation.report["tuning_trials"] if trial["model"] == "als"]
    assert len(als_trials) == settings.tuning.max_trials  # and every other model of the competition
    ndcg = {name: entry["metrics"]["ndcg@10"] for name, entry in evaluation.report["models"].items()}
    assert ndcg["als"] >= 2 * ndcg["popularity"], summary
    assert ndcg["als"] > ndcg["item_knn"], summary
    planted = summary["planted"]
    assert planted["als_top10_in_top_taste"] >= 2.5 * planted["chance"], planted
