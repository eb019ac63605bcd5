"""Recommenders with one interface: implicit ALS (Spark MLlib, the production model), global
popularity and item-kNN (the baselines), blockwise top-N scoring and the ALS tuner.

Users and items are dense indices (``u``, ``i``) into ``Interactions``; ids are mapped by the
caller (:mod:`jobs.recommender.interactions`). A model is ``fit`` on interactions and gives ``scores`` for
a block of users (rows x all items). ALS trains in Spark on the distributed frame; its item
factors come to the driver, its user factors stay in Spark (``user_frame``) unless an
evaluation asks for ``user_factors``. The baselines and the "already seen" mask are sparse
matrices on the driver. :func:`top_n` scores rows in blocks sized to a memory budget
(rows x items), masks seen and disallowed items with -inf, takes the top N by partial sort
and applies a per-category cap, all vectorised; :func:`top_n_spark` runs the same scoring in
Spark's executors, one Arrow batch of rows at a time, for lists of every customer.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)
SCORE_CELLS_PER_BLOCK = 8_000_000  # float32 cells scored at once (~32 MB)


@dataclass
class Interactions:
    """``frame``: Spark ``u int, i int, weight double, last_day date`` (one row per pair)."""

    frame: DataFrame
    n_users: int
    n_items: int
    _csr: sp.csr_matrix | None = field(default=None, repr=False)

    def to_csr(self) -> sp.csr_matrix:
        """users x items weights on the driver (for the baselines and the seen mask)."""
        if self._csr is None:
            table = self.frame.select("u", "i", "weight").toArrow()
            u = table.column("u").to_numpy().astype(np.int32)
            i = table.column("i").to_numpy().astype(np.int32)
            w = table.column("weight").to_numpy().astype(np.float32)
            self._csr = sp.csr_matrix((w, (u, i)), shape=(self.n_users, self.n_items))
        return self._csr


def confidence(weight: Column, kind: str) -> Column:
    """How an interaction weight becomes the ALS rating (confidence = 1 + alpha x rating)."""
    if kind == "raw":
        return weight
    if kind == "log":
        return F.log1p(weight)
    if kind == "binary":
        return F.lit(1.0)
    raise ValueError(f"unknown confidence {kind!r}")


def _factors(frame: DataFrame, n: int, rank: int) -> np.ndarray:
    table = frame.toArrow()
    out = np.zeros((n, rank), dtype=np.float32)
    ids = table.column("id").to_numpy()
    if len(ids):
        out[ids] = np.stack(table.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)
    return out


def _ensure_checkpoint_dir(spark) -> None:
    """ALS checkpoints its factors every ``checkpointInterval`` (10) iterations only when the
    context has a checkpoint directory; without one, the lineage of a run of more than ~20
    iterations overflows the JVM stack. A temporary directory is set when none is."""
    context = spark.sparkContext
    if context.getCheckpointDir() is None:
        import tempfile

        context.setCheckpointDir(tempfile.mkdtemp(prefix="mkt-als-checkpoints-"))


class AlsRecommender:
    name = "als"

    def __init__(self, params, seed: int = 0):
        self.params, self.seed = params, seed
        self.item_factors: np.ndarray | None = None
        self.spark_model = None
        self.n_users = 0
        self._user_factors: np.ndarray | None = None

    def fit(self, data: Interactions) -> AlsRecommender:
        from pyspark.ml.recommendation import ALS

        p = self.params
        spark = data.frame.sparkSession
        # Spark's default of 10 user and 10 item blocks is meant for clusters: on a few cores
        # the per-block tasks cost more than they save; long runs checkpoint (see below)
        blocks = min(10, max(2, spark.sparkContext.defaultParallelism))
        long_run = p.max_iter > 20
        if long_run:
            _ensure_checkpoint_dir(spark)
        als = ALS(
            rank=p.rank,
            maxIter=p.max_iter,
            regParam=p.reg_param,
            alpha=p.alpha,
            implicitPrefs=True,
            userCol="u",
            itemCol="i",
            ratingCol="rating",
            coldStartStrategy="drop",
            seed=self.seed,
            numUserBlocks=blocks,
            numItemBlocks=blocks,
            checkpointInterval=10 if long_run else -1,
        )
        ratings = data.frame.select("u", "i", confidence(F.col("weight"), p.confidence).alias("rating"))
        self.spark_model = als.fit(ratings)
        self.n_users, self._user_factors = data.n_users, None
        self.item_factors = _factors(self.spark_model.itemFactors, data.n_items, p.rank)
        return self

    @property
    def user_frame(self) -> DataFrame:
        """Spark ``u int, features array<float>``: the user factors, where they were trained."""
        return self.spark_model.userFactors.select(F.col("id").alias("u"), "features")

    @property
    def user_factors(self) -> np.ndarray:
        """Every user's factors on the driver (evaluation of a training split); publishing
        scores in Spark from :attr:`user_frame` instead."""
        if self._user_factors is None:
            self._user_factors = _factors(self.spark_model.userFactors, self.n_users, self.params.rank)
        return self._user_factors

    def scores(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T


class PopularityRecommender:
    """The same list for everybody: users per item over the most recent ``days``, each user's
    interaction weighted ``0.5 ** (age / half_life_days)`` when a half-life is given (recent
    popularity; a shop's best sellers turn over within weeks)."""

    name = "popularity"

    def __init__(self, days: int = 30, half_life_days: float | None = None):
        self.days, self.half_life_days = days, half_life_days
        self.popularity: np.ndarray | None = None

    def fit(self, data: Interactions) -> PopularityRecommender:
        frame = data.frame
        last = frame.agg(F.max("last_day")).first()[0]
        weight = F.lit(1.0)
        if last is not None:
            frame = frame.where(F.col("last_day") > F.date_sub(F.lit(last), self.days))
            if self.half_life_days:
                age = F.datediff(F.lit(last), F.col("last_day"))
                weight = F.pow(F.lit(0.5), age / F.lit(float(self.half_life_days)))
        counts = frame.groupBy("i").agg(F.sum(weight).alias("n")).toPandas()
        self.popularity = np.zeros(data.n_items, dtype=np.float32)
        self.popularity[counts["i"].to_numpy()] = counts["n"].to_numpy()
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), len(self.popularity))).copy()


class EaseRecommender:
    """EASE (Steck 2019): a closed-form item x item linear model. With ``G = X'X + l2 I`` over
    the binary users x items matrix ``X``, ``P = G^-1`` and ``B = -P / diag(P)`` with a zero
    diagonal; a user's score for an item is their row of ``X`` times ``B``. One dense
    ``items x items`` inverse on the driver: ``max_items`` (default 20,000: 1.6 GB in float32
    twice over) bounds it, and a larger catalogue raises :class:`ModelTooLarge` so the
    competition goes on without EASE."""

    name = "ease"

    def __init__(self, l2: float = 200.0, max_items: int = 20_000):
        self.l2, self.max_items = l2, max_items
        self.user_items: sp.csr_matrix | None = None
        self.weights: np.ndarray | None = None

    def fit(self, data: Interactions) -> EaseRecommender:
        if data.n_items > self.max_items:
            raise ModelTooLarge(
                f"EASE needs an items x items matrix: {data.n_items} items > max_items {self.max_items}"
            )
        binary = data.to_csr().copy()
        binary.data[:] = 1.0
        gram = (binary.T @ binary).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        self.weights = weights.astype(np.float32)
        self.user_items = binary.tocsr()
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_items[users] @ self.weights, dtype=np.float32)

    @property
    def item_vectors(self) -> np.ndarray:
        """Items x items: a user's binary history row times this, transposed, is their scores."""
        return self.weights.T


class ModelTooLarge(ValueError):
    """A model that cannot fit this data on one node (e.g. EASE beyond ``max_items``)."""


class ItemKnnRecommender:
    """Cosine similarity between items' user vectors (binary), ``neighbours`` kept per item;
    a user's score for an item is the sum of its similarities to the user's items."""

    name = "item_knn"

    def __init__(self, neighbours: int = 50):
        self.neighbours = neighbours
        self.user_items: sp.csr_matrix | None = None
        self.similarity: sp.csr_matrix | None = None

    def fit(self, data: Interactions) -> ItemKnnRecommender:
        binary = data.to_csr().copy()
        binary.data[:] = 1.0
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
        normalised = binary @ sp.diags(1.0 / np.maximum(norms, 1e-12))
        similarity = (normalised.T @ normalised).tocoo()
        keep = similarity.row != similarity.col
        pairs = pd.DataFrame({"row": similarity.row[keep], "col": similarity.col[keep], "s": similarity.data[keep]})
        pairs = pairs.sort_values(["row", "s"], ascending=[True, False])
        pairs = pairs[pairs.groupby("row").cumcount() < self.neighbours]
        self.similarity = sp.csr_matrix(
            (pairs["s"].to_numpy(np.float32), (pairs["row"].to_numpy(), pairs["col"].to_numpy())),
            shape=(data.n_items, data.n_items),
        )
        self.user_items = binary.tocsr()
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.user_items[users] @ self.similarity).todense(), dtype=np.float32)

    @property
    def item_vectors(self) -> sp.csr_matrix:
        """Items x items (sparse): a user's binary history row times this, transposed, is their scores."""
        return self.similarity.T.tocsr()


def top_n(
    score_block,
    rows: np.ndarray,
    n_columns: int,
    n: int,
    exclude: sp.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    per_category: int | None = None,
) -> pd.DataFrame:
    """Top ``n`` columns per row of ``score_block(rows_block) -> dense block``, blockwise.

    ``exclude``: sparse matrix whose non-zeros (row, column) are never returned (e.g. seen
    items); ``allowed``: boolean mask of columns that may be returned (e.g. active products);
    ``categories`` + ``per_category``: at most that many columns of one category per row.
    Returns ``row, rank, column, score`` (rank 1 = best; -inf scores never returned).
    """
    block_rows = max(1, SCORE_CELLS_PER_BLOCK // max(n_columns, 1))
    capped = categories is not None and per_category is not None
    candidates = min(n_columns, n * 4 if capped else n)
    parts = []
    for start in range(0, len(rows), block_rows):
        block = rows[start : start + block_rows]
        scores = np.asarray(score_block(block), dtype=np.float32)
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        if exclude is not None:
            seen = exclude[block].tocoo()
            scores[seen.row, seen.col] = -np.inf
        if candidates < n_columns:
            top = np.argpartition(-scores, candidates - 1, axis=1)[:, :candidates]
        else:
            top = np.tile(np.arange(n_columns), (len(block), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        frame = pd.DataFrame(
            {
                "row": np.repeat(block, top.shape[1]),
                "column": top.ravel(),
                "score": top_scores.ravel(),
            }
        )
        frame = frame[np.isfinite(frame["score"])].sort_values(
            ["row", "score", "column"], ascending=[True, False, True]
        )
        if capped:
            frame = frame[frame.groupby(["row", categories[frame["column"].to_numpy()]]).cumcount() < per_category]
        frame = frame.assign(rank=frame.groupby("row").cumcount() + 1)
        parts.append(frame[frame["rank"] <= n])
    if not parts:
        return pd.DataFrame({"row": [], "rank": [], "column": [], "score": []})
    return pd.concat(parts, ignore_index=True)[["row", "rank", "column", "score"]]


def _dense(block) -> np.ndarray:
    return block.toarray() if sp.issparse(block) else block


def lists_matrix(lists: pd.Series, n_columns: int) -> sp.csr_matrix:
    """Rows of column lists (or None) as a sparse 0/1 matrix, for :func:`top_n`'s ``exclude``."""
    lengths = np.fromiter((0 if v is None else len(v) for v in lists), dtype=np.int64, count=len(lists))
    columns = np.concatenate([np.asarray(v, dtype=np.int64) for v in lists if v is not None and len(v)] or [[]])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_matrix((np.ones(len(columns), np.float32), columns, indptr), shape=(len(lists), n_columns))


def top_n_spark(
    rows: DataFrame,
    vectors,
    item_vectors: np.ndarray,
    n: int,
    key: str,
    allowed: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    per_category: int | None = None,
) -> DataFrame:
    """:func:`top_n` in Spark's executors: the top ``n`` items for every row of ``rows``.

    ``rows``: a Spark frame with the output ``key``, ``exclude`` (array of item indices never
    returned, or null) and whatever ``vectors`` reads; ``vectors(batch) -> rows x d`` turns a
    pandas batch of it into vectors, and a row's scores are its vector times ``item_vectors``
    (items x d) transposed. The item side travels to each executor with the task (Spark
    broadcasts a large task), the rows never leave the executors. Rows are hash-partitioned and
    sorted by ``key`` first, so a re-run scores them in the same batches (the same lists, bit
    for bit, for the same ``spark.sql.shuffle.partitions``). Returns Spark ``key, rank int,
    column int, score float`` (rank 1 = best).
    """
    from pyspark.sql.types import FloatType, IntegerType, StructField, StructType

    if sp.issparse(item_vectors):
        item_vectors = item_vectors.astype(np.float32).tocsr()
    else:
        item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    n_columns = item_vectors.shape[0]
    schema = StructType(
        [
            StructField(key, rows.schema[key].dataType),
            StructField("rank", IntegerType()),
            StructField("column", IntegerType()),
            StructField("score", FloatType()),
        ]
    )

    def score(batches):
        for batch in batches:
            if not len(batch):
                continue
            users = vectors(batch)
            users = users.astype(np.float32) if sp.issparse(users) else np.asarray(users, dtype=np.float32)
            exclude = lists_matrix(batch["exclude"], n_columns)
            best = top_n(
                lambda block, users=users: _dense(users[block] @ item_vectors.T),
                np.arange(len(batch)),
                n_columns,
                n,
                exclude,
                allowed,
                categories,
                per_category,
            )
            yield pd.DataFrame(
                {
                    key: batch[key].to_numpy()[best["row"].to_numpy(dtype=np.int64)],
                    "rank": best["rank"].to_numpy(dtype=np.int32),
                    "column": best["column"].to_numpy(dtype=np.int32),
                    "score": best["score"].to_numpy(dtype=np.float32),
                }
            )

    # the same rows in the same Arrow batches and blocks on every run: float32 matrix products
    # differ in their last bits with the block's shape, which would reorder near-ties
    ordered = rows.repartition(key).sortWithinPartitions(key)
    return ordered.mapInPandas(score, schema)


def recommend(
    model, users: np.ndarray, data: Interactions, n: int, exclude: sp.csr_matrix | None = None, **filters
) -> pd.DataFrame:
    """``u, rank, i, score`` for ``users`` (indices); the non-zeros of ``exclude`` (users x
    items) are never recommended, by default every item the user has in ``data``."""
    exclude = data.to_csr() if exclude is None else exclude
    result = top_n(model.scores, np.asarray(users), data.n_items, n, exclude=exclude, **filters)
    return result.rename(columns={"row": "u", "column": "i"})


def similar_items(spark, item_factors: np.ndarray, n: int, allowed: np.ndarray | None = None) -> DataFrame:
    """Spark ``i, rank, similar_i, similarity``: cosine similarity of item factors, self
    excluded, scored in the executors (:func:`top_n_spark`)."""
    norms = np.linalg.norm(item_factors, axis=1, keepdims=True)
    unit = (item_factors / np.maximum(norms, 1e-12)).astype(np.float32)
    items = spark.createDataFrame(pd.DataFrame({"i": np.flatnonzero(norms.ravel() > 0).astype(np.int32)}))
    rows = items.withColumn("exclude", F.array("i"))
    result = top_n_spark(rows, lambda batch: unit[batch["i"].to_numpy()], unit, n, "i", allowed=allowed)
    return result.select("i", "rank", F.col("column").alias("similar_i"), F.col("score").alias("similarity"))


def similar_by_copurchase(data: Interactions, n: int, allowed: np.ndarray | None = None) -> pd.DataFrame:
    """``i, rank, similar_i, similarity``: each item's ``n`` most similar items by the cosine of
    their (binary) user vectors, self and disallowed items excluded; for the models without
    item factors. Sparse, on the driver."""
    knn = ItemKnnRecommender(neighbours=n if allowed is None else n + int((~allowed).sum())).fit(data)
    coo = knn.similarity.tocoo()
    frame = pd.DataFrame({"i": coo.row, "similar_i": coo.col, "similarity": coo.data})
    if allowed is not None:
        frame = frame[allowed[frame["similar_i"].to_numpy()]]
    frame = frame[frame["similarity"] > 0].sort_values(["i", "similarity", "similar_i"], ascending=[True, False, True])
    frame = frame.assign(rank=frame.groupby("i").cumcount() + 1)
    return frame[frame["rank"] <= n][["i", "rank", "similar_i", "similarity"]].reset_index(drop=True)


def candidate_params(tuning) -> list:
    """ALS parameter sets: the default first, then distinct random points of the search space (seeded)."""
    from itertools import product

    space = tuning.space
    names = list(type(space).model_fields)
    grid = [dict(zip(names, values, strict=True)) for values in product(*(getattr(space, n) for n in names))]
    rng = random.Random(tuning.seed)
    rng.shuffle(grid)
    chosen = [tuning.default]
    for point in grid:
        if len(chosen) >= tuning.max_trials:
            break
        params = type(tuning.default).model_validate(point)
        if params not in chosen:
            chosen.append(params)
    return chosen


@dataclass
class TuningResult:
    """``best``: model name -> its best parameters on validation; ``winner``: the model with
    the best validation nDCG; ``trials``: every trial (skipped ones with the reason)."""

    best: dict[str, dict]
    winner: str
    trials: list[dict]


def tune(
    train: Interactions,
    validation: pd.DataFrame,
    k: int,
    plan: list[tuple[str, dict]],
    make,
    exclude: sp.csr_matrix | None = None,
) -> TuningResult:
    """Fit every ``(model, params)`` of ``plan`` (``make(model, params) -> recommender``) on
    ``train`` and measure nDCG@k on ``validation`` (``u, i`` held out from ``train``; seen only
    here, never by the test set). A model that cannot fit this data (:class:`ModelTooLarge`)
    is skipped with its reason. ``exclude``: as for :func:`recommend`."""
    from models.rec_metrics import ndcg_at_k

    users = np.sort(validation["u"].unique())
    truth = validation.rename(columns={"u": "user_id", "i": "item_id"})
    trials, best, score = [], {}, {}
    metric = f"ndcg@{k}"
    for name, params in plan:
        started = time.monotonic()
        try:
            model = make(name, params).fit(train)
        except ModelTooLarge as too_large:
            trials.append({"model": name, **params, "skipped": str(too_large)})
            log.warning("%s skipped: %s", name, too_large)
            continue
        recs = recommend(model, users, train, k, exclude).rename(columns={"u": "user_id", "i": "item_id"})
        ndcg = float(ndcg_at_k(recs, truth, k).mean()) if len(truth) else 0.0
        trials.append(
            {"model": name, **params, metric: round(ndcg, 6), "seconds": round(time.monotonic() - started, 2)}
        )
        log.info("tuning trial %s %s: %s = %.4f", name, params, metric, ndcg)
        if name not in best or ndcg > score[name]:  # ties: the earlier trial (ALS: the default)
            best[name], score[name] = params, ndcg
    if not best:
        raise ModelTooLarge("no model of the competition could be fitted: " + "; ".join(t["skipped"] for t in trials))
    winner = max(best, key=lambda name: score[name])  # ties: the first model of the plan
    return TuningResult(best, winner, trials)
