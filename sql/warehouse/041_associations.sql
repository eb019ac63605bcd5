-- Cross-sell rules (jobs/activation/associations.py): association rules counted nightly from
-- purchase baskets and tested for significance; one snapshot per date, history kept (re-running a date
-- replaces it). A rule reads "baskets holding the antecedent products also hold the consequent".

create table if not exists {schema}.mart_product_associations (
    snapshot_date               date not null,
    antecedent_product_ids      varchar not null,
    antecedent_size             integer not null,
    consequent_product_id       bigint not null,
    support                     double precision not null,
    confidence                  double precision not null,
    lift                        double precision not null,
    basket_count                bigint not null,
    antecedent_basket_count     bigint not null,
    loaded_at                   timestamptz not null,
    leverage                    double precision,
    p_value                     double precision,
    primary key (snapshot_date, antecedent_product_ids, consequent_product_id)
);

-- the significance columns came after the table first shipped: warehouses created before get them here
alter table {schema}.mart_product_associations add column if not exists leverage double precision;
alter table {schema}.mart_product_associations add column if not exists p_value double precision;

create or replace view {schema}.v_product_associations_latest as
select * from {schema}.mart_product_associations
where snapshot_date = (select max(snapshot_date) from {schema}.mart_product_associations);
