-- Warehouse star schema. Applied idempotently by `jobs.platform.warehouse.ensure_schema`;
-- {schema} is replaced by warehouse.schema from config (validated as an identifier).
-- Money is in the shop's currency unit (config shop.currency), timestamps are UTC (_at),
-- dates are the shop's local business date (_date).

create table if not exists {schema}.dim_user (
    user_id             bigint primary key,
    signup_at           timestamptz not null,
    signup_date         date not null,
    gender              varchar(1) not null,
    birth_year          integer,
    region              varchar,
    city                varchar,
    email_hash          varchar(64),
    phone_hash          varchar(64),
    has_email           boolean not null,
    has_phone           boolean not null,
    has_email_consent   boolean not null,
    has_sms_consent     boolean not null,
    has_push_consent    boolean not null,
    updated_at          timestamptz not null,
    loaded_at           timestamptz not null,
    customer_code       varchar
);

-- The shop's own customer key where user_id is a surrogate of it (string ids)
alter table {schema}.dim_user add column if not exists customer_code varchar;

create table if not exists {schema}.dim_product (
    product_id          bigint primary key,
    product_name        varchar not null,
    category_l1         varchar not null,
    category_l2         varchar,
    brand               varchar,
    price               decimal(12, 2) not null,
    is_active           boolean not null,
    updated_at          timestamptz not null,
    loaded_at           timestamptz not null,
    sku                 varchar,
    product_type        varchar,
    is_merchandise      boolean
);

-- The shop's product code, and whether a product is goods (product_type merchandise) or a line
-- such as shipping, a fee or an adjustment: in order totals, never in lists or product KPIs.
alter table {schema}.dim_product add column if not exists sku varchar;
alter table {schema}.dim_product add column if not exists product_type varchar;
alter table {schema}.dim_product add column if not exists is_merchandise boolean;

create table if not exists {schema}.fct_orders (
    order_id            bigint primary key,
    user_id             bigint,
    order_date          date not null,
    created_at          timestamptz not null,
    paid_at             timestamptz,
    status              varchar not null,
    is_paid             boolean not null,
    is_cancelled        boolean not null,
    is_refunded         boolean not null,
    is_completed        boolean not null,
    total_amount        decimal(14, 2) not null,
    discount_amount     decimal(14, 2) not null,
    gross_amount        decimal(14, 2) not null,
    has_coupon          boolean not null,
    coupon_code         varchar,
    channel             varchar,
    updated_at          timestamptz not null,
    loaded_at           timestamptz not null,
    is_guest            boolean,
    order_type          varchar,
    original_order_id   bigint,
    is_large_order      boolean,
    order_number        varchar
);

-- Guest orders have no customer (user_id null, is_guest); credit notes are orders of type
-- 'return' with a negative total and negative line quantities, linked to the sale they reverse
-- when the source says so (original_order_id). Flags: is_large_order, is_bulk_line.
alter table {schema}.fct_orders alter column user_id drop not null;
alter table {schema}.fct_orders add column if not exists is_guest boolean;
alter table {schema}.fct_orders add column if not exists order_type varchar;
alter table {schema}.fct_orders add column if not exists original_order_id bigint;
alter table {schema}.fct_orders add column if not exists is_large_order boolean;
alter table {schema}.fct_orders add column if not exists order_number varchar;

create table if not exists {schema}.fct_order_items (
    order_id            bigint not null,
    line_no             integer not null,
    user_id             bigint,
    order_date          date not null,
    product_id          bigint not null,
    quantity            integer not null,
    unit_price          decimal(12, 2) not null,
    line_amount         decimal(14, 2) not null,
    updated_at          timestamptz not null,
    loaded_at           timestamptz not null,
    is_bulk_line        boolean,
    primary key (order_id, line_no)
);

alter table {schema}.fct_order_items alter column user_id drop not null;
alter table {schema}.fct_order_items add column if not exists is_bulk_line boolean;

create table if not exists {schema}.fct_events_daily (
    event_date          date not null,
    user_id             bigint not null,
    event_type          varchar not null,
    event_count         bigint not null,
    session_count       bigint not null,
    product_count       bigint not null,
    first_event_at      timestamptz not null,
    last_event_at       timestamptz not null,
    loaded_at           timestamptz not null,
    primary key (event_date, user_id, event_type)
);

-- The shop's suppression list, insert-only: a (user_id, channel) suppression is written once, as
-- first recorded, and never updated or deleted by a later import (publish mode insert_new).
create table if not exists {schema}.dim_suppression (
    user_id             bigint not null,
    channel             varchar not null,
    reason              varchar not null,
    suppressed_at       timestamptz not null,
    first_loaded_at     timestamptz not null,
    primary key (user_id, channel)
);

create table if not exists {schema}.ops_pipeline_runs (
    logical_date        date not null,
    stage               varchar not null,
    dataset             varchar not null,
    status              varchar not null,
    rows_in             bigint,
    rows_out            bigint,
    rows_quarantined    bigint,
    rows_duplicate      bigint,
    details_json        varchar,
    recorded_at         timestamptz not null,
    primary key (logical_date, stage, dataset)
);

create table if not exists {schema}.ops_stage_runs (
    logical_date        date not null,
    stage               varchar not null,
    status              varchar not null,
    started_at          timestamptz not null,
    finished_at         timestamptz not null,
    duration_s          double precision not null,
    error               varchar,
    peak_rss_mb         double precision,
    primary key (logical_date, stage)
);

-- peak_rss_mb came after the table first shipped: warehouses created before get it here
alter table {schema}.ops_stage_runs add column if not exists peak_rss_mb double precision;

create table if not exists {schema}.ops_table_freshness (
    table_name          varchar not null primary key,
    stage               varchar not null,
    logical_date        date not null,
    published_at        timestamptz not null,
    rows_published      bigint not null
);

create table if not exists {schema}.ops_quarantine_daily (
    logical_date        date not null,
    dataset             varchar not null,
    reason              varchar not null,
    row_count           bigint not null,
    recorded_at         timestamptz not null,
    primary key (logical_date, dataset, reason)
);

create table if not exists {schema}.ops_data_quality (
    logical_date        date not null,
    dataset             varchar not null,
    contract_id         varchar not null,
    contract_version    varchar not null,
    check_name          varchar not null,
    expectation_type    varchar not null,
    column_name         varchar,
    severity            varchar not null,
    is_success          boolean not null,
    element_count       bigint,
    unexpected_count    bigint,
    observed_value      varchar,
    validated_at        timestamptz not null,
    primary key (logical_date, dataset, check_name)
);

-- Which PII hashing key made the warehouse's email/phone hashes: a keyed fingerprint of it
-- (never the key). A run with another key stops instead of mixing hashes.
create table if not exists {schema}.ops_pii_key (
    key_fingerprint     varchar not null primary key,
    first_used_at       timestamptz not null
);

create table if not exists {schema}.ops_source_watermarks (
    table_name          varchar not null,
    logical_date        date not null,
    lower_bound_at      timestamptz,
    upper_bound_at      timestamptz not null,
    row_count           bigint not null,
    is_full_reload      boolean not null,
    extracted_at        timestamptz not null,
    primary key (table_name, logical_date)
);
