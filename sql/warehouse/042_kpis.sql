-- The shop's daily KPIs (jobs/activation/kpis.py, sql/marts/mart_kpi_daily.sql): one row per
-- date and one row per date and traffic source, replaced when a date is re-built. Definitions
-- are the comments in schema_kpis.yml. Money is in the shop's currency; a rate is a share
-- (0-1), null when its denominator is 0.

create table if not exists {schema}.mart_kpi_daily (
    kpi_date                        date not null primary key,
    net_sales_amount                decimal(14, 2) not null,
    order_count                     bigint not null,
    paying_customer_count           bigint not null,
    avg_order_amount                decimal(14, 2),
    coupon_order_count              bigint not null,
    coupon_use_rate                 double precision,
    new_customer_count              bigint not null,
    returning_customer_count        bigint not null,
    repeat_purchase_rate            double precision,
    active_customer_count           bigint not null,
    retention_base_customer_count   bigint not null,
    retained_customer_count         bigint not null,
    retention_rate_30d              double precision,
    churn_rate_30d                  double precision,
    paid_order_count_30d            bigint not null,
    refunded_order_count_30d        bigint not null,
    refund_rate_30d                 double precision,
    session_count                   bigint not null,
    product_view_session_count      bigint not null,
    cart_session_count              bigint not null,
    checkout_session_count          bigint not null,
    placed_order_count              bigint not null,
    abandoned_cart_session_count    bigint not null,
    cart_abandonment_rate           double precision,
    session_conversion_rate         double precision,
    loaded_at                       timestamptz not null,
    returned_amount                 decimal(14, 2),
    return_count                    bigint,
    guest_order_count               bigint,
    returned_amount_30d             decimal(14, 2),
    return_rate_30d                 double precision
);

-- Credit notes and guest orders (real shops' exports) came after the table first shipped
alter table {schema}.mart_kpi_daily add column if not exists returned_amount decimal(14, 2);
alter table {schema}.mart_kpi_daily add column if not exists return_count bigint;
alter table {schema}.mart_kpi_daily add column if not exists guest_order_count bigint;
alter table {schema}.mart_kpi_daily add column if not exists returned_amount_30d decimal(14, 2);
alter table {schema}.mart_kpi_daily add column if not exists return_rate_30d double precision;

create table if not exists {schema}.mart_traffic_daily (
    kpi_date                        date not null,
    utm_source                      varchar not null,
    session_count                   bigint not null,
    visitor_count                   bigint not null,
    event_count                     bigint not null,
    product_view_session_count      bigint not null,
    cart_session_count              bigint not null,
    checkout_session_count          bigint not null,
    abandoned_cart_session_count    bigint not null,
    loaded_at                       timestamptz not null,
    primary key (kpi_date, utm_source)
);

-- Day-over-day and week-over-week changes live in this view, not in stored columns: a stored
-- change would go stale when an earlier date is re-built (restated), while the view always
-- compares the rows as they are now, and the table keeps one column per KPI. The earlier row
-- is found by date (kpi_date - 1, kpi_date - 7) rather than with lag() over the rows, which
-- would silently compare with an older date when a date is missing: here that gives null.
-- A change is relative, x / x_earlier - 1 (0.05 = +5%), also for rates; the counts behind a
-- rate carry none. Columns are listed (no k.*) so that a column added to the table later
-- cannot shift the view's columns, which PostgreSQL refuses on "create or replace view".
create or replace view {schema}.v_kpi_daily as
select
    k.kpi_date,
    k.net_sales_amount,
    cast(k.net_sales_amount as double precision) / nullif(previous_day.net_sales_amount, 0) - 1 as net_sales_amount_dod,
    cast(k.net_sales_amount as double precision) / nullif(week_before.net_sales_amount, 0) - 1 as net_sales_amount_wow,
    k.order_count,
    cast(k.order_count as double precision) / nullif(previous_day.order_count, 0) - 1 as order_count_dod,
    cast(k.order_count as double precision) / nullif(week_before.order_count, 0) - 1 as order_count_wow,
    k.paying_customer_count,
    cast(k.paying_customer_count as double precision) / nullif(previous_day.paying_customer_count, 0) - 1 as paying_customer_count_dod,
    cast(k.paying_customer_count as double precision) / nullif(week_before.paying_customer_count, 0) - 1 as paying_customer_count_wow,
    k.avg_order_amount,
    cast(k.avg_order_amount as double precision) / nullif(previous_day.avg_order_amount, 0) - 1 as avg_order_amount_dod,
    cast(k.avg_order_amount as double precision) / nullif(week_before.avg_order_amount, 0) - 1 as avg_order_amount_wow,
    k.coupon_order_count,
    k.coupon_use_rate,
    cast(k.coupon_use_rate as double precision) / nullif(previous_day.coupon_use_rate, 0) - 1 as coupon_use_rate_dod,
    cast(k.coupon_use_rate as double precision) / nullif(week_before.coupon_use_rate, 0) - 1 as coupon_use_rate_wow,
    k.new_customer_count,
    cast(k.new_customer_count as double precision) / nullif(previous_day.new_customer_count, 0) - 1 as new_customer_count_dod,
    cast(k.new_customer_count as double precision) / nullif(week_before.new_customer_count, 0) - 1 as new_customer_count_wow,
    k.returning_customer_count,
    k.repeat_purchase_rate,
    cast(k.repeat_purchase_rate as double precision) / nullif(previous_day.repeat_purchase_rate, 0) - 1 as repeat_purchase_rate_dod,
    cast(k.repeat_purchase_rate as double precision) / nullif(week_before.repeat_purchase_rate, 0) - 1 as repeat_purchase_rate_wow,
    k.active_customer_count,
    cast(k.active_customer_count as double precision) / nullif(previous_day.active_customer_count, 0) - 1 as active_customer_count_dod,
    cast(k.active_customer_count as double precision) / nullif(week_before.active_customer_count, 0) - 1 as active_customer_count_wow,
    k.retention_base_customer_count,
    k.retained_customer_count,
    k.retention_rate_30d,
    cast(k.retention_rate_30d as double precision) / nullif(previous_day.retention_rate_30d, 0) - 1 as retention_rate_30d_dod,
    cast(k.retention_rate_30d as double precision) / nullif(week_before.retention_rate_30d, 0) - 1 as retention_rate_30d_wow,
    k.churn_rate_30d,
    cast(k.churn_rate_30d as double precision) / nullif(previous_day.churn_rate_30d, 0) - 1 as churn_rate_30d_dod,
    cast(k.churn_rate_30d as double precision) / nullif(week_before.churn_rate_30d, 0) - 1 as churn_rate_30d_wow,
    k.paid_order_count_30d,
    k.refunded_order_count_30d,
    k.refund_rate_30d,
    cast(k.refund_rate_30d as double precision) / nullif(previous_day.refund_rate_30d, 0) - 1 as refund_rate_30d_dod,
    cast(k.refund_rate_30d as double precision) / nullif(week_before.refund_rate_30d, 0) - 1 as refund_rate_30d_wow,
    k.session_count,
    cast(k.session_count as double precision) / nullif(previous_day.session_count, 0) - 1 as session_count_dod,
    cast(k.session_count as double precision) / nullif(week_before.session_count, 0) - 1 as session_count_wow,
    k.product_view_session_count,
    cast(k.product_view_session_count as double precision) / nullif(previous_day.product_view_session_count, 0) - 1 as product_view_session_count_dod,
    cast(k.product_view_session_count as double precision) / nullif(week_before.product_view_session_count, 0) - 1 as product_view_session_count_wow,
    k.cart_session_count,
    cast(k.cart_session_count as double precision) / nullif(previous_day.cart_session_count, 0) - 1 as cart_session_count_dod,
    cast(k.cart_session_count as double precision) / nullif(week_before.cart_session_count, 0) - 1 as cart_session_count_wow,
    k.checkout_session_count,
    cast(k.checkout_session_count as double precision) / nullif(previous_day.checkout_session_count, 0) - 1 as checkout_session_count_dod,
    cast(k.checkout_session_count as double precision) / nullif(week_before.checkout_session_count, 0) - 1 as checkout_session_count_wow,
    k.placed_order_count,
    cast(k.placed_order_count as double precision) / nullif(previous_day.placed_order_count, 0) - 1 as placed_order_count_dod,
    cast(k.placed_order_count as double precision) / nullif(week_before.placed_order_count, 0) - 1 as placed_order_count_wow,
    k.abandoned_cart_session_count,
    k.cart_abandonment_rate,
    cast(k.cart_abandonment_rate as double precision) / nullif(previous_day.cart_abandonment_rate, 0) - 1 as cart_abandonment_rate_dod,
    cast(k.cart_abandonment_rate as double precision) / nullif(week_before.cart_abandonment_rate, 0) - 1 as cart_abandonment_rate_wow,
    k.session_conversion_rate,
    cast(k.session_conversion_rate as double precision) / nullif(previous_day.session_conversion_rate, 0) - 1 as session_conversion_rate_dod,
    cast(k.session_conversion_rate as double precision) / nullif(week_before.session_conversion_rate, 0) - 1 as session_conversion_rate_wow,
    k.loaded_at,
    -- added later, so last: "create or replace view" may only add columns at the end
    k.returned_amount,
    k.return_count,
    k.guest_order_count,
    k.returned_amount_30d,
    k.return_rate_30d
from {schema}.mart_kpi_daily as k
left join {schema}.mart_kpi_daily as previous_day on previous_day.kpi_date = k.kpi_date - 1
left join {schema}.mart_kpi_daily as week_before on week_before.kpi_date = k.kpi_date - 7;
