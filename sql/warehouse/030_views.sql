-- Views with stable names for BI tools: the latest customer snapshots.

create or replace view {schema}.v_user_rfm_latest as
select * from {schema}.mart_user_rfm
where snapshot_date = (select max(snapshot_date) from {schema}.mart_user_rfm);

create or replace view {schema}.v_user_lifecycle_latest as
select * from {schema}.mart_user_lifecycle
where snapshot_date = (select max(snapshot_date) from {schema}.mart_user_lifecycle);

create or replace view {schema}.v_user_tags_latest as
select * from {schema}.mart_user_tags
where snapshot_date = (select max(snapshot_date) from {schema}.mart_user_tags);

create or replace view {schema}.v_user_profile_latest as
select * from {schema}.mart_user_profile
where snapshot_date = (select max(snapshot_date) from {schema}.mart_user_profile);

create or replace view {schema}.v_recommendations_latest as
select * from {schema}.mart_recommendations
where snapshot_date = (select max(snapshot_date) from {schema}.mart_recommendations);

create or replace view {schema}.v_buy_again_latest as
select * from {schema}.mart_buy_again
where snapshot_date = (select max(snapshot_date) from {schema}.mart_buy_again);

create or replace view {schema}.v_similar_items_latest as
select * from {schema}.mart_similar_items
where snapshot_date = (select max(snapshot_date) from {schema}.mart_similar_items);
