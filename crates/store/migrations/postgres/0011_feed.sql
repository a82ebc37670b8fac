-- The live feed reads events and attempts in commit order (crates/store/src/feed.rs). `seq` is
-- taken at insert time, and two transactions may commit in the other order, so each row also
-- records the id of the transaction that wrote it. Rows stored before this migration read as
-- transaction 0 (ordered by `seq` among themselves): the constant default adds the column
-- without rewriting the table, then new rows get their writer's id.
ALTER TABLE events ADD COLUMN feed_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_feed ON events (feed_xid, seq);
ALTER TABLE attempts ADD COLUMN feed_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE attempts ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX attempts_feed ON attempts (feed_xid, seq);
