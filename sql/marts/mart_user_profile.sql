-- The wide profile for snapshot :d: every customer's attributes (staged by the tags stage)
-- joined to the same date's lifecycle stage, RFM, churn scores and tags, one column per tag.
-- Filled in by jobs/customers/tags.py from config/tags.yaml: {staged} (the staged attributes),
-- {attribute_columns}, {tag_columns} (", tag_x, tag_y" or "") and {tag_pivots} (one
-- string_agg per tag column, or ""). Values are bind parameters (:d, :loaded_at, :tag_N).

insert into {schema}.mart_user_profile (
    {attribute_columns},
    lifecycle_stage,
    rfm_group, r_score, f_score, m_score, recency_days, frequency, monetary,
    churn_risk, churn_risk_band, expected_next_order_date, predicted_value_12m
    {tag_columns},
    loaded_at
)
with attributes as (
    select {attribute_columns} from {staged}
),

lifecycle as (
    select user_id, lifecycle_stage
    from {schema}.mart_user_lifecycle
    where snapshot_date = :d
),

rfm as (
    select user_id, rfm_group, r_score, f_score, m_score, recency_days, frequency, monetary
    from {schema}.mart_user_rfm
    where snapshot_date = :d
),

scores as (
    select user_id, churn_risk, churn_risk_band, expected_next_order_date, predicted_value_12m
    from {schema}.mart_customer_scores
    where snapshot_date = :d
),

tags_wide as (
    select user_id {tag_pivots}
    from {schema}.mart_user_tags
    where snapshot_date = :d
    group by user_id
),

joined as (
    select
        attributes.*,
        lifecycle.lifecycle_stage,
        rfm.rfm_group, rfm.r_score, rfm.f_score, rfm.m_score,
        rfm.recency_days, rfm.frequency, rfm.monetary,
        scores.churn_risk, scores.churn_risk_band,
        scores.expected_next_order_date, scores.predicted_value_12m
        {tag_columns},
        cast(:loaded_at as timestamp with time zone) as loaded_at
    from attributes
    left join lifecycle on lifecycle.user_id = attributes.user_id
    left join rfm on rfm.user_id = attributes.user_id
    left join scores on scores.user_id = attributes.user_id
    left join tags_wide on tags_wide.user_id = attributes.user_id
)

select * from joined;
