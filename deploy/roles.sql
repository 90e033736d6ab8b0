-- The login the api-server connects as at run time, and the group roles it acts as.
--
-- The migrations create the NOLOGIN group roles (fodi_core, fodi_ai, fodi_ledger,
-- fodi_analytics: each may write its own schema only; fodi_readonly: reads everything). The
-- api-server's connections act as one of them each (`[roles] per_crate`, see
-- docs/security.md), so its login needs membership in each and nothing else: not the
-- schemas' ownership, not superuser.
--
-- Run as the schemas' owner after `migrator up`, then give the login a password:
--   psql "$OWNER_URL" -f deploy/roles.sql
--   psql "$OWNER_URL" -c '\password fodi_app'
-- (psql asks for it and sends it hashed: never on a command line or in the server's log)
-- and set database.url to postgres://fodi_app:...@host/db?sslmode=verify-full.
-- The embedded cluster runs this script itself. Idempotent.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fodi_app') THEN
        -- NOINHERIT: the login has no rights of its own; a connection has those of the
        -- group it acts as (SET ROLE, which membership allows).
        CREATE ROLE fodi_app LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END $$;

DO $$
DECLARE
    group_role text;
BEGIN
    -- Only the group roles that exist: they are created by the sets' first migrations, and a
    -- cluster whose databases never held a set (the core backend owning `public`) lacks it.
    FOR group_role IN
        SELECT rolname FROM pg_roles
         WHERE rolname IN ('fodi_core', 'fodi_ai', 'fodi_ledger', 'fodi_analytics', 'fodi_readonly')
    LOOP
        EXECUTE format('GRANT %I TO fodi_app', group_role);
    END LOOP;
END $$;
