-- The live feed (crates/store/src/feed.rs) needs nothing new on SQLite: one writer at a time
-- makes `seq` commit order. The version exists so both backends report the same schema.
SELECT 1;
