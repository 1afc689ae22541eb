-- Public keys that verify JWT-SVIDs of the server's own trust domain, in the order they were
-- added. A key is published here before it signs anything, and stays until expires_at, after
-- which no token it signed is valid.
CREATE TABLE bundle_jwt_authorities (
    key_id TEXT PRIMARY KEY,
    -- PKIX SubjectPublicKeyInfo DER, hex encoded.
    public_key_hex TEXT NOT NULL,
    -- Unix seconds.
    expires_at BIGINT NOT NULL,
    position BIGINT NOT NULL
);
