-- Label of the source that manages an entry, such as `entry apply --owner team-payments`. Empty
-- for entries created one by one, which `entry apply` never changes or deletes.
ALTER TABLE registration_entries ADD COLUMN owner TEXT NOT NULL DEFAULT '';

CREATE INDEX registration_entries_owner ON registration_entries (owner);
