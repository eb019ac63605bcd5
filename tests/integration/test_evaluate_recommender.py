"""``marketing evaluate-recommender`` end to end (installed console script, real local Spark)
on a small interaction file with planted taste clusters, both protocols, and its one-line
errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.unit.test_cli import assert_one_line_error, marketing, sandbox

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def planted(n_users=200, n_items=90, clusters=6, per_user=16, seed=0) -> pd.DataFrame:
    """Each user mostly interacts with the items of their cluster, a little with the rest."""
    rng = np.random.default_rng(seed)
    size = n_items // clusters
    rows = []
    start = pd.Timestamp("2026-09-01")
    for user in range(n_users):
        cluster = user % clusters
        own = cluster * size + rng.zipf(1.6, per_user) % size
        other = rng.integers(0, n_items, per_user)
        items = np.where(rng.random(per_user) < 0.85, own, other)
        days = rng.uniform(0, 60, per_user)
        for item, day in zip(items, days, strict=True):
            rows.append((f"u{user}", f"p{item}", start + pd.Timedelta(days=float(day)), 1 + int(rng.integers(0, 3))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rec")
    data = planted()
    data.to_csv(root / "interactions.csv", index=False)
    data[["user_id", "item_id"]].to_parquet(root / "no_time.parquet", index=False)
    settings = yaml.safe_load((Path(__file__).parents[2] / "config" / "recommender.yaml").read_text())
    # a small search keeps the test quick; it still tunes: the default and one other point
    settings["tuning"].update(
        max_trials=2, default={"rank": 16, "reg_param": 0.1, "alpha": 10.0, "max_iter": 5, "confidence": "log"}
    )
    settings["tuning"]["space"].update(rank=[8, 16], max_iter=[5])
    settings["competition"].update(ease_l2=[50, 500], knn_neighbours=[20], popularity_days=[7, 30],
                                   popularity_half_life_days=[None])  # fmt: skip
    (root / "recommender.yaml").write_text(yaml.safe_dump(settings))
    return {
        "root": root,
        "csv": root / "interactions.csv",
        "no_time": root / "no_time.parquet",
        "settings": root / "recommender.yaml",
    }


def evaluate(files, cwd, *args):
    env = {**sandbox(cwd), "MKT_RECOMMENDER__CONFIG_FILE": str(files["settings"]), "MKT_SPARK__SHUFFLE_PARTITIONS": "4"}
    return marketing("evaluate-recommender", *args, cwd=cwd, **env)


@pytest.fixture(scope="module")
def config(files, spark):
    from tests.conftest import shop_config

    return shop_config(
        files["root"], recommender={"config_file": str(files["settings"])}, spark={"shuffle_partitions": 4}
    )


@pytest.fixture(scope="module")
def runs(files, config) -> dict[str, Path]:
    """One run per protocol on the same file: through the command, and in-process (the same
    function the command calls, on the test session's Spark)."""
    from jobs.recommender.evaluation import evaluate_recommender

    out = files["root"] / "random-per-user"
    proc = evaluate(files, files["root"], "--interactions", str(files["csv"]), "--k", "5", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["out_dir"] == str(out)
    temporal = files["root"] / "temporal"
    evaluate_recommender(config, str(temporal), interactions=str(files["csv"]), protocol="temporal", k=5)
    return {"random-per-user": out, "temporal": temporal}


@pytest.mark.parametrize("protocol", ["random-per-user", "temporal"])
def test_both_protocols_write_metrics_recommendations_and_the_split(files, runs, protocol):
    out = runs[protocol]
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["models"]) == {"als", "ease", "popularity", "item_knn"}
    assert [t["model"] for t in report["tuning_trials"]] == ["als"] * 2 + ["ease"] * 2 + ["item_knn"] + [
        "popularity"
    ] * 2
    assert report["als_params"]["rank"] in (8, 16) and report["models"]["ease"]["params"]["l2"] in (50, 500)
    ndcg = {name: model["metrics"]["ndcg@5"] for name, model in report["models"].items()}
    assert ndcg["als"] > 1.5 * ndcg["popularity"], ndcg  # planted tastes: personalisation must pay
    assert ndcg["ease"] > 1.5 * ndcg["popularity"], ndcg
    # the model best on validation is chosen, and compared with the strongest cheap baseline
    validation = report["validation"]
    assert report["chosen"] == max(validation, key=validation.get) in ("als", "ease")
    versus = report["versus_baseline"]
    baseline = max(("popularity", "item_knn"), key=ndcg.get)
    assert versus["model"] == report["chosen"] and versus["baseline"] == baseline
    assert versus["low"] <= versus["difference"] <= versus["high"]
    assert versus["difference"] == pytest.approx(ndcg[report["chosen"]] - ndcg[baseline], abs=1e-5)
    for name in ("precision@5", "recall@5", "map@5", "hit_rate@5", "coverage@5", "novelty@5", "popularity_bias@5"):
        assert name in report["models"]["als"]["metrics"]

    if protocol == "temporal":  # the buy-again list, measured on what users had before and again after the cut
        again = report["buy_again"]
        assert set(again["models"]) == {"buy_again", "most_bought"} and again["method"] in again["validation"]
        assert again["test"]["users_evaluated"] == again["versus_baseline"]["users"] > 0
        assert 0 < again["models"]["most_bought"]["ndcg@5"] <= 1
    else:
        assert "buy_again" not in report  # no pair is on both sides of a random split

    train, test = pd.read_csv(out / "train.csv"), pd.read_csv(out / "test.csv")
    original = pd.read_csv(files["csv"])
    if protocol == "temporal":
        assert len(train) + len(test) == len(original)
        assert pd.to_datetime(train["timestamp"]).max() <= pd.to_datetime(test["timestamp"]).min()
    else:  # one row per user and item on both sides, no pair on both
        pairs = original.groupby(["user_id", "item_id"]).size()
        assert len(train) + len(test) == len(pairs)
        assert not set(zip(train.user_id, train.item_id, strict=True)) & set(
            zip(test.user_id, test.item_id, strict=True)
        )
    recs = pd.read_csv(out / "recommendations.csv")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert recs.groupby("user_id")["rank"].max().max() <= 5
    assert recs["user_id"].nunique() == report["test"]["users_evaluated"] > 0
    seen = set(zip(train.user_id, train.item_id, strict=True))
    assert not any((u, i) in seen for u, i in zip(recs.user_id, recs.item_id, strict=True)), (
        "recommended a training item"
    )


def test_train_and_test_files_are_taken_as_given(config, runs, tmp_path):
    from jobs.recommender.evaluation import evaluate_recommender

    first = runs["random-per-user"]
    out = tmp_path / "given"
    evaluate_recommender(config, str(out), train=str(first / "train.csv"), test=str(first / "test.csv"), k=5)
    assert not (out / "train.csv").exists()  # no split made
    given = json.loads((out / "metrics.json").read_text())
    split_here = json.loads((first / "metrics.json").read_text())
    assert given["test"] == split_here["test"] and given["train"] == split_here["train"]
    assert given["models"]["als"]["metrics"]["ndcg@5"] > given["models"]["popularity"]["metrics"]["ndcg@5"]
    assert given["chosen"] == split_here["chosen"]


def test_bad_input_is_a_one_line_error(files, config, tmp_path):
    from jobs.recommender.evaluation import evaluate_recommender

    missing = tmp_path / "missing.csv"
    pd.DataFrame({"user": [1], "item_id": [2]}).to_csv(missing, index=False)
    with pytest.raises(ValueError, match=r"missing\.csv: missing column\(s\) user_id"):
        evaluate_recommender(config, str(tmp_path / "o"), interactions=str(missing))
    bad_weight = tmp_path / "bad.csv"
    pd.DataFrame({"user_id": [1, 2], "item_id": [2, 3], "weight": ["1", "lots"]}).to_csv(bad_weight, index=False)
    with pytest.raises(ValueError, match="column weight has 1 value.*'lots'"):
        evaluate_recommender(config, str(tmp_path / "o"), interactions=str(bad_weight))
    # through the command: one line on stderr, exit 2
    assert_one_line_error(
        evaluate(
            files,
            tmp_path,
            "--interactions",
            str(files["no_time"]),
            "--protocol",
            "temporal",
            "--out-dir",
            str(tmp_path / "o"),
        ),
        "--protocol temporal needs a timestamp",
    )
    assert_one_line_error(
        evaluate(files, tmp_path, "--train", str(files["csv"]), "--out-dir", str(tmp_path / "o")), "--test"
    )
    assert_one_line_error(
        evaluate(files, tmp_path, "--interactions", str(files["csv"]), "--test-ratio", "1.5", "--out-dir", "o"),
        "--test-ratio",
    )


def test_interaction_timestamps_may_be_unix_epoch_seconds_or_milliseconds(spark, tmp_path):
    """Public interaction datasets (MovieLens, Retailrocket, ...) export epoch seconds or ms."""
    from jobs.recommender.evaluation import read_interactions

    export = tmp_path / "ratings.csv"
    export.write_text("user_id,item_id,timestamp\n1,10,964982703\n1,11,1433221332117\n2,10,2000-07-30T18:45:03Z\n")
    rows = (
        read_interactions(spark, export, "--interactions").selectExpr("item_id", "cast(ts as string) as ts").collect()
    )
    assert sorted((row["item_id"], row["ts"]) for row in rows) == [
        ("10", "2000-07-30 18:45:03"),
        ("10", "2000-07-30 18:45:03"),
        ("11", "2015-06-02 05:02:12.117"),
    ]
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("user_id,item_id\n1,10\n2\n")
    with pytest.raises(ValueError, match=r"ragged\.csv line 3: 1 field\(s\), the header has 2"):
        read_interactions(spark, ragged, "--interactions")
