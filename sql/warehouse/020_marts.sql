-- Customer marts: one snapshot per date, history kept (re-running a date replaces it).

create table if not exists {schema}.mart_user_rfm (
    snapshot_date       date not null,
    user_id             bigint not null,
    recency_days        integer not null,
    frequency           bigint not null,
    monetary            double precision not null,
    avg_order_value     double precision,
    r_score             integer,
    f_score             integer,
    m_score             integer,
    fm_score            integer,
    rfm_group           varchar not null,
    scoring_method      varchar not null,
    first_order_date    date not null,
    last_order_date     date not null,
    loaded_at           timestamptz not null,
    primary key (snapshot_date, user_id)
);

create table if not exists {schema}.mart_user_lifecycle (
    snapshot_date           date not null,
    user_id                 bigint not null,
    lifecycle_stage         varchar not null,
    days_since_last_order   integer,
    order_count             integer not null,
    typical_gap_days        integer,
    first_order_date        date,
    last_order_date         date,
    previous_stage          varchar,
    loaded_at               timestamptz not null,
    primary key (snapshot_date, user_id)
);

create table if not exists {schema}.mart_lifecycle_transitions (
    snapshot_date       date not null,
    from_stage          varchar not null,
    to_stage            varchar not null,
    user_count          bigint not null,
    primary key (snapshot_date, from_stage, to_stage)
);
