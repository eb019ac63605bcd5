-- Campaigns (jobs/activation/allocate.py, export.py): who was picked for which campaign each
-- night, in which group, and the contact history the cap and the measurement read.

create table if not exists {schema}.mart_campaign_targets (
    snapshot_date       date not null,
    campaign_id         varchar not null,
    user_id             bigint not null,
    arm                 varchar not null,
    campaign_version    integer not null,
    channel             varchar not null,
    bucket              integer not null,
    reason_code         varchar not null,
    product_id_1        bigint,
    product_id_2        bigint,
    product_id_3        bigint,
    score_name          varchar,
    score               double precision,
    loaded_at           timestamptz not null,
    primary key (snapshot_date, campaign_id, user_id)
);

create table if not exists {schema}.mart_campaign_funnel (
    snapshot_date               date not null,
    campaign_id                 varchar not null,
    campaign_version            integer not null,
    channel                     varchar not null,
    priority                    integer not null,
    holdout_share               double precision not null,
    eligible                    bigint not null,
    suppressed_no_consent       bigint not null,
    suppressed_list             bigint not null,
    suppressed_global_holdout   bigint not null,
    recently_contacted          bigint not null,
    lost_to_priority            bigint not null,
    capped                      bigint not null,
    control                     bigint not null,
    target                      bigint not null,
    exported                    bigint,
    loaded_at                   timestamptz not null,
    primary key (snapshot_date, campaign_id)
);

create table if not exists {schema}.fct_campaign_contacts (
    contact_date        date not null,
    campaign_id         varchar not null,
    user_id             bigint not null,
    arm                 varchar not null,
    campaign_version    integer not null,
    channel             varchar not null,
    attribution_window_days integer not null,
    loaded_at           timestamptz not null,
    primary key (contact_date, campaign_id, user_id)
);

create or replace view {schema}.v_campaign_targets_latest as
select * from {schema}.mart_campaign_targets
where snapshot_date = (select max(snapshot_date) from {schema}.mart_campaign_targets);

create table if not exists {schema}.mart_campaign_results (
    campaign_id             varchar not null,
    cohort_date             date not null,
    metric                  varchar not null,
    adjustment              varchar not null,
    window_days             integer not null,
    window_end_date         date not null,
    n_target                bigint not null,
    n_control               bigint not null,
    mean_target             double precision,
    mean_control            double precision,
    abs_lift                double precision,
    abs_ci_low              double precision,
    abs_ci_high             double precision,
    rel_lift                double precision,
    rel_ci_low              double precision,
    rel_ci_high             double precision,
    p_value                 double precision,
    incremental_value       double precision,
    incremental_ci_low      double precision,
    incremental_ci_high     double precision,
    srm_p_value             double precision,
    is_srm_mismatch         boolean not null,
    is_valid                boolean not null,
    note                    varchar,
    measured_on             date not null,
    loaded_at               timestamptz not null,
    primary key (campaign_id, cohort_date, metric, adjustment)
);
