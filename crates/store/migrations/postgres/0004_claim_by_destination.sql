-- The worker claims per destination (exactly the room each destination has), so the due scan
-- must be able to start at one destination's oldest due delivery.
CREATE INDEX deliveries_due_by_destination ON deliveries (status, destination, next_attempt_at, seq);
