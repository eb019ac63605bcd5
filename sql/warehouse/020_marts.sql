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

create table if not exists {schema}.mart_customer_scores (
    snapshot_date               date not null,
    user_id                     bigint not null,
    churn_risk                  double precision,
    churn_risk_band             varchar,
    expected_next_order_date    date,
    predicted_value_12m         double precision,
    scoring_method              varchar not null,
    loaded_at                   timestamptz not null,
    primary key (snapshot_date, user_id)
);

create table if not exists {schema}.mart_churn_model_quality (
    snapshot_date       date not null,
    model               varchar not null,
    auc                 double precision not null,
    brier               double precision not null,
    n_train             bigint not null,
    n_test              bigint not null,
    churn_rate          double precision not null,
    is_selected         boolean not null,
    note                varchar,
    primary key (snapshot_date, model)
);

create table if not exists {schema}.mart_churn_calibration (
    snapshot_date       date not null,
    bin_low             double precision not null,
    bin_high            double precision not null,
    customers           bigint not null,
    mean_predicted      double precision not null,
    observed_rate       double precision not null,
    primary key (snapshot_date, bin_low)
);

create table if not exists {schema}.mart_user_tags (
    snapshot_date       date not null,
    user_id             bigint not null,
    tag                 varchar not null,
    value               varchar not null,
    score               double precision,
    rank                integer not null,
    source              varchar not null,
    evidence_date       date,
    loaded_at           timestamptz not null,
    primary key (snapshot_date, user_id, tag, rank)
);

-- One column tag_<name> per tag of config/tags.yaml is added after loaded_at by the tags
-- stage (jobs.platform.warehouse.add_profile_tag_columns); columns are never dropped.
create table if not exists {schema}.mart_user_profile (
    snapshot_date               date not null,
    user_id                     bigint not null,
    gender                      varchar(1),
    age                         integer,
    region                      varchar,
    city                        varchar,
    signup_date                 date,
    has_email_consent           boolean,
    has_sms_consent             boolean,
    has_push_consent            boolean,
    lifecycle_stage             varchar,
    rfm_group                   varchar,
    r_score                     integer,
    f_score                     integer,
    m_score                     integer,
    recency_days                integer,
    frequency                   bigint,
    monetary                    double precision,
    churn_risk                  double precision,
    churn_risk_band             varchar,
    expected_next_order_date    date,
    predicted_value_12m         double precision,
    loaded_at                   timestamptz not null,
    primary key (snapshot_date, user_id)
);

-- Recommender (jobs/recommender/stage.py): published only by a model that passed the nightly gate.
create table if not exists {schema}.mart_recommendations (
    snapshot_date       date not null,
    user_id             bigint not null,
    rank                integer not null,
    product_id          bigint not null,
    score               double precision not null,
    reason_code         varchar not null,
    model_version       varchar not null,
    loaded_at           timestamptz not null,
    primary key (snapshot_date, user_id, rank)
);

create table if not exists {schema}.mart_similar_items (
    snapshot_date       date not null,
    product_id          bigint not null,
    rank                integer not null,
    similar_product_id  bigint not null,
    similarity          double precision not null,
    model_version       varchar not null,
    loaded_at           timestamptz not null,
    primary key (snapshot_date, product_id, rank)
);

-- Buy again (models/buy_again.py): products each customer bought before, best to buy again.
create table if not exists {schema}.mart_buy_again (
    snapshot_date       date not null,
    user_id             bigint not null,
    rank                integer not null,
    product_id          bigint not null,
    score               double precision not null,
    times_bought        integer not null,
    last_bought         date not null,
    due_date            date not null,
    method              varchar not null,
    model_version       varchar not null,
    loaded_at           timestamptz not null,
    primary key (snapshot_date, user_id, rank)
);

create table if not exists {schema}.mart_model_evaluation (
    model_version       varchar not null,
    snapshot_date       date not null,
    model               varchar not null,
    user_group          varchar not null,
    metric              varchar not null,
    value               double precision not null,
    users               bigint not null,
    is_published        boolean not null,
    loaded_at           timestamptz not null,
    primary key (model_version, model, user_group, metric)
);
