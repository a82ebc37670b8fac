-- Named leases: work that must run on one node at a time (a schedule, a stream connection, a
-- sync job) is done by whichever node holds its lease; the others take over once it expires.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
