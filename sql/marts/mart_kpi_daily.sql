-- The shop's KPIs for date :d, one row (definitions: sql/warehouse/schema_kpis.yml). Run by
-- jobs/activation/kpis.py in the publish transaction, after D's old row is deleted and D's
-- mart_traffic_daily rows are written: sessions and funnel steps are their sums.
-- Bind parameters: :d, :loaded_at, and the status lists of jobs/platform/interface.py
-- :purchase_statuses (an order that counts as a purchase) and :paid_statuses (an order that
-- was paid: a purchase or refunded). Orders count with their latest known status. A rate whose
-- denominator is 0 is null; counts and amounts of a date without data are 0.

insert into {schema}.mart_kpi_daily (
    kpi_date,
    net_sales_amount, order_count, paying_customer_count, avg_order_amount,
    coupon_order_count, coupon_use_rate,
    new_customer_count, returning_customer_count, repeat_purchase_rate, active_customer_count,
    retention_base_customer_count, retained_customer_count, retention_rate_30d, churn_rate_30d,
    paid_order_count_30d, refunded_order_count_30d, refund_rate_30d,
    session_count, product_view_session_count, cart_session_count, checkout_session_count, placed_order_count,
    abandoned_cart_session_count, cart_abandonment_rate, session_conversion_rate,
    loaded_at,
    returned_amount, return_count, guest_order_count, returned_amount_30d, return_rate_30d
)
with dates as (
    -- the 30 days ending on D are (period_start, D]; the 30 days before them (prior_period_start, period_start]
    select
        cast(:d as date) as kpi_date,
        cast(:d as date) - 30 as period_start,
        cast(:d as date) - 60 as prior_period_start
),

recent_orders as (
    select
        orders.order_id,
        orders.user_id,
        orders.order_date,
        orders.total_amount,
        orders.has_coupon,
        orders.is_refunded,
        orders.user_id is null as is_guest,
        -- a credit note (order_type return: negative total) is never a purchase; unless cancelled it
        -- reduces net sales on its own date
        coalesce(orders.order_type, 'sale') = 'sale' and orders.status in :purchase_statuses as is_purchase,
        coalesce(orders.order_type, 'sale') = 'return' and orders.status <> 'cancelled' as is_return,
        coalesce(orders.order_type, 'sale') = 'sale' and orders.status in :paid_statuses as was_paid,
        orders.order_date = dates.kpi_date as is_on_kpi_date,
        orders.order_date > dates.period_start as is_in_period
    from {schema}.fct_orders as orders
    cross join dates
    where orders.order_date > dates.prior_period_start
      and orders.order_date <= dates.kpi_date
),

day_purchases as (
    select order_id, user_id, order_date, total_amount, has_coupon
    from recent_orders
    where is_on_kpi_date and is_purchase
),

sales as (
    select
        coalesce(sum(total_amount), 0) as sales_amount,
        count(*) as order_count,
        count(distinct user_id) as paying_customer_count,
        count(*) filter (where has_coupon) as coupon_order_count,
        count(*) filter (where user_id is null) as guest_order_count
    from day_purchases
),

returns as (
    select
        coalesce(-sum(total_amount) filter (where is_on_kpi_date), 0) as returned_amount,
        count(*) filter (where is_on_kpi_date) as return_count,
        coalesce(-sum(total_amount) filter (where is_in_period), 0) as returned_amount_30d
    from recent_orders
    where is_return
),

period_sales as (
    select coalesce(sum(total_amount), 0) as sales_amount_30d
    from recent_orders
    where is_purchase and is_in_period
),

placed_orders as (
    select count(*) as placed_order_count
    from recent_orders
    where is_on_kpi_date
),

returning_customers as (
    -- D's paying customers with a purchase on any earlier date
    select count(distinct day_purchases.user_id) as returning_customer_count
    from day_purchases
    where exists (
        select 1
        from {schema}.fct_orders as earlier
        where earlier.user_id = day_purchases.user_id
          and earlier.order_date < day_purchases.order_date
          and earlier.status in :purchase_statuses
          and coalesce(earlier.order_type, 'sale') = 'sale'
    )
),

active_customers as (
    -- customers with behaviour or a purchase on D: a shop without behaviour data counts buyers
    select count(distinct active.user_id) as active_customer_count
    from (
        select events.user_id
        from {schema}.fct_events_daily as events
        cross join dates
        where events.event_date = dates.kpi_date
        union all
        select user_id from day_purchases where user_id is not null
    ) as active
),

period_buyers as (
    select
        user_id,
        count(*) filter (where not is_in_period) > 0 as bought_in_prior_period,
        count(*) filter (where is_in_period) > 0 as bought_in_period
    from recent_orders
    where is_purchase and user_id is not null
    group by user_id
),

retention as (
    select
        count(*) filter (where bought_in_prior_period) as retention_base_customer_count,
        count(*) filter (where bought_in_prior_period and bought_in_period) as retained_customer_count
    from period_buyers
),

refunds as (
    select
        count(*) filter (where was_paid) as paid_order_count_30d,
        count(*) filter (where was_paid and is_refunded) as refunded_order_count_30d
    from recent_orders
    where is_in_period
),

traffic as (
    select
        coalesce(sum(traffic_rows.session_count), 0) as session_count,
        coalesce(sum(traffic_rows.product_view_session_count), 0) as product_view_session_count,
        coalesce(sum(traffic_rows.cart_session_count), 0) as cart_session_count,
        coalesce(sum(traffic_rows.checkout_session_count), 0) as checkout_session_count,
        coalesce(sum(traffic_rows.abandoned_cart_session_count), 0) as abandoned_cart_session_count
    from {schema}.mart_traffic_daily as traffic_rows
    cross join dates
    where traffic_rows.kpi_date = dates.kpi_date
),

kpis as (
    select
        dates.kpi_date,
        cast(sales.sales_amount - returns.returned_amount as decimal(14, 2)) as net_sales_amount,
        sales.order_count,
        sales.paying_customer_count,
        cast(round(sales.sales_amount / nullif(sales.order_count, 0), 2) as decimal(14, 2)) as avg_order_amount,
        sales.coupon_order_count,
        cast(sales.coupon_order_count as double precision) / nullif(sales.order_count, 0) as coupon_use_rate,
        sales.paying_customer_count - returning_customers.returning_customer_count as new_customer_count,
        returning_customers.returning_customer_count,
        cast(returning_customers.returning_customer_count as double precision)
            / nullif(sales.paying_customer_count, 0) as repeat_purchase_rate,
        active_customers.active_customer_count,
        retention.retention_base_customer_count,
        retention.retained_customer_count,
        cast(retention.retained_customer_count as double precision)
            / nullif(retention.retention_base_customer_count, 0) as retention_rate_30d,
        1 - cast(retention.retained_customer_count as double precision)
            / nullif(retention.retention_base_customer_count, 0) as churn_rate_30d,
        refunds.paid_order_count_30d,
        refunds.refunded_order_count_30d,
        cast(refunds.refunded_order_count_30d as double precision)
            / nullif(refunds.paid_order_count_30d, 0) as refund_rate_30d,
        cast(traffic.session_count as bigint) as session_count,
        cast(traffic.product_view_session_count as bigint) as product_view_session_count,
        cast(traffic.cart_session_count as bigint) as cart_session_count,
        cast(traffic.checkout_session_count as bigint) as checkout_session_count,
        placed_orders.placed_order_count,
        cast(traffic.abandoned_cart_session_count as bigint) as abandoned_cart_session_count,
        cast(traffic.abandoned_cart_session_count as double precision)
            / nullif(traffic.cart_session_count, 0) as cart_abandonment_rate,
        cast(sales.order_count as double precision) / nullif(traffic.session_count, 0) as session_conversion_rate,
        cast(:loaded_at as timestamp with time zone) as loaded_at,
        cast(returns.returned_amount as decimal(14, 2)) as returned_amount,
        returns.return_count,
        sales.guest_order_count,
        cast(returns.returned_amount_30d as decimal(14, 2)) as returned_amount_30d,
        cast(returns.returned_amount_30d as double precision)
            / nullif(period_sales.sales_amount_30d, 0) as return_rate_30d
    from dates
    cross join sales
    cross join returns
    cross join period_sales
    cross join placed_orders
    cross join returning_customers
    cross join active_customers
    cross join retention
    cross join refunds
    cross join traffic
)

select * from kpis;
