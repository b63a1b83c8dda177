-- Roles for applications. tootlake_app writes the sync tables (give it LOGIN and a password
-- outside this repository: ALTER ROLE tootlake_app LOGIN PASSWORD '...'); tootlake_reader is for
-- dashboards / BI tools / the older system's readers. Idempotent.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tootlake_app') THEN
        CREATE ROLE tootlake_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tootlake_reader') THEN
        CREATE ROLE tootlake_reader NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public, gold TO tootlake_app, tootlake_reader;
GRANT SELECT ON platforms, rawposts, processedposts TO tootlake_reader;
GRANT SELECT ON platforms TO tootlake_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON rawposts, processedposts TO tootlake_app;
-- the gold copy drops and re-creates its tables: the app role owns that schema's content
GRANT CREATE ON SCHEMA gold TO tootlake_app;
GRANT SELECT ON ALL TABLES IN SCHEMA gold TO tootlake_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA gold GRANT SELECT ON TABLES TO tootlake_reader;
