-- What a credential may do. Write keys ingest; tokens read, edit or administer (docs/security.md).
-- Tokens made before scopes existed were read tokens and stay so.
ALTER TABLE keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'read';
UPDATE keys SET scope = 'ingest' WHERE kind = 'write';
