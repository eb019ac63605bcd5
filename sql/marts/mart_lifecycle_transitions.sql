-- Lifecycle moves of snapshot :d, run after the snapshot is written (same transaction).
-- 1. Each customer's previous stage: their stage in the latest earlier snapshot.
-- 2. The date's transition counts per (from_stage, to_stage); '(none)' = not in that snapshot.

update {schema}.mart_user_lifecycle as current_snapshot
set previous_stage = previous_snapshot.lifecycle_stage
from {schema}.mart_user_lifecycle as previous_snapshot
where current_snapshot.snapshot_date = :d
  and previous_snapshot.user_id = current_snapshot.user_id
  and previous_snapshot.snapshot_date = (
      select max(snapshot_date) from {schema}.mart_user_lifecycle where snapshot_date < :d
  );

delete from {schema}.mart_lifecycle_transitions where snapshot_date = :d;

insert into {schema}.mart_lifecycle_transitions (snapshot_date, from_stage, to_stage, user_count)
with snapshot as (
    select
        snapshot_date,
        coalesce(previous_stage, '(none)') as from_stage,
        lifecycle_stage as to_stage
    from {schema}.mart_user_lifecycle
    where snapshot_date = :d
),

moves as (
    select snapshot_date, from_stage, to_stage, count(*) as user_count
    from snapshot
    group by snapshot_date, from_stage, to_stage
)

select * from moves;
