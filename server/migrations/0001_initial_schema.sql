-- Initial schema. It runs unchanged on SQLite and PostgreSQL: only TEXT and BIGINT columns,
-- booleans stored as 0 or 1, lists stored as JSON arrays of strings.

-- One row holds a whole registration entry, so every write of an entry is a single statement.
CREATE TABLE registration_entries (
    id TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    selectors TEXT NOT NULL,
    -- SHA-256 (hex) of the SPIFFE ID, the parent ID and the sorted set of selectors. The unique
    -- constraint rejects duplicate entries even when several servers write at the same time.
    identity_key TEXT NOT NULL UNIQUE,
    x509_svid_ttl BIGINT NOT NULL,
    jwt_svid_ttl BIGINT NOT NULL,
    federates_with TEXT NOT NULL,
    admin BIGINT NOT NULL,
    downstream BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    dns_names TEXT NOT NULL,
    revision_number BIGINT NOT NULL,
    store_svid BIGINT NOT NULL,
    hint TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX registration_entries_parent_id ON registration_entries (parent_id);
CREATE INDEX registration_entries_spiffe_id ON registration_entries (spiffe_id);
CREATE INDEX registration_entries_created_at ON registration_entries (created_at, id);

CREATE TABLE attested_agents (
    spiffe_id TEXT PRIMARY KEY,
    attestation_type TEXT NOT NULL,
    serial_number TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    selectors TEXT NOT NULL,
    banned BIGINT NOT NULL,
    can_reattest BIGINT NOT NULL
);

-- Join tokens are stored as SHA-256 (hex) of the token, so a copy of the database does not give
-- away tokens that are still unused.
CREATE TABLE join_tokens (
    token_sha256 TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- X.509 authorities of the server's own trust domain, in the order they were added.
CREATE TABLE bundle_authorities (
    sha256 TEXT PRIMARY KEY,
    der_hex TEXT NOT NULL,
    position BIGINT NOT NULL
);

-- A single row with the bundle's sequence number, bumped on every change of the authorities.
CREATE TABLE bundle_state (
    id BIGINT PRIMARY KEY,
    sequence_number BIGINT NOT NULL
);

INSERT INTO bundle_state (id, sequence_number) VALUES (1, 0);
