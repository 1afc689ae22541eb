-- A tainted authority stays in the bundle, so what it signed still verifies, but agents replace
-- every SVID it signed at once. Stored as 0 or 1.
ALTER TABLE bundle_authorities ADD COLUMN tainted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE bundle_jwt_authorities ADD COLUMN tainted BIGINT NOT NULL DEFAULT 0;

-- The authority ID of the CA that signed the agent's current X509-SVID, so that an authority is
-- revoked only once no agent holds an X509-SVID it signed. Empty for SVIDs signed before this
-- column existed.
ALTER TABLE attested_agents ADD COLUMN x509_authority_id TEXT NOT NULL DEFAULT '';
