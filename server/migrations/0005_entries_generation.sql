-- A single row with the entries generation, bumped in the same transaction as every write of
-- registration_entries. A server that caches the entries reads this one row per request to learn
-- whether any server sharing the database changed them since.
CREATE TABLE entries_state (
    id BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);

INSERT INTO entries_state (id, generation) VALUES (1, 0);
