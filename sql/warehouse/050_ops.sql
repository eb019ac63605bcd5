-- Views for the people who run the pipeline (never granted to the BI role: ops_*).

-- One row per stage run and dataset it recorded: how long, how much memory, rows in and out.
create or replace view {schema}.ops_task_metrics as
select
    s.logical_date,
    s.stage,
    p.dataset,
    s.status,
    s.started_at,
    s.finished_at,
    s.duration_s,
    s.peak_rss_mb,
    p.rows_in,
    p.rows_out,
    p.rows_quarantined,
    p.rows_duplicate,
    case when p.rows_in > 0 then cast(p.rows_quarantined as double precision) / p.rows_in end as quarantine_rate
from {schema}.ops_stage_runs s
left join {schema}.ops_pipeline_runs p
    on p.logical_date = s.logical_date
    and p.recorded_at >= s.started_at
    and p.recorded_at <= s.finished_at;

-- Per date and dataset: checks run and failed, and the share of rows the clean stage quarantined.
create or replace view {schema}.ops_quality_trend as
with checks as (
    select
        logical_date,
        dataset,
        count(*) as checks,
        sum(case when not is_success and severity = 'error' then 1 else 0 end) as failed_errors,
        sum(case when not is_success and severity = 'warning' then 1 else 0 end) as failed_warnings
    from {schema}.ops_data_quality
    group by logical_date, dataset
)
select
    c.logical_date,
    c.dataset,
    c.checks,
    c.failed_errors,
    c.failed_warnings,
    r.rows_in,
    r.rows_quarantined,
    case when r.rows_in > 0 then cast(r.rows_quarantined as double precision) / r.rows_in end as quarantine_rate
from checks c
left join {schema}.ops_pipeline_runs r
    on r.logical_date = c.logical_date and r.dataset = c.dataset and r.stage = 'clean';
