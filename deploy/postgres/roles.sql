-- The database roles of model-lens-sync (docs/operations.md, "Database roles"). Run it as a
-- superuser, connected to the model-lens database: the compose stack does on its first start
-- (deploy/postgres/initdb/), and it is idempotent, so run it again on an existing database
-- (it hands the existing tables to the owner role):
--   psql "$SUPERUSER_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--
--   model_lens_owner   runs `model-lens-sync migrate`: owns the schema and every table, view
--                      and sequence in it. Nothing else uses it.
--   model_lens_app     runs `serve` and `sync`: reads and writes rows (SELECT, INSERT, UPDATE,
--                      DELETE), creates TEMP staging tables, takes advisory locks and sends
--                      NOTIFY (neither needs a privilege). It cannot create, alter or drop
--                      anything in the schema.
--   model_lens_reader  SELECT only, NOLOGIN: grant it to the roles of apps and analysts.
-- Passwords are set apart (deploy/postgres/initdb/10-model-lens-roles.sh), never in this file.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'model_lens_owner') THEN
        CREATE ROLE model_lens_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'model_lens_app') THEN
        CREATE ROLE model_lens_app LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'model_lens_reader') THEN
        CREATE ROLE model_lens_reader NOLOGIN;
    END IF;
END
$$;

-- The database: only the owner may create schemas; the runtime needs temporary tables.
DO $$
BEGIN
    EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO model_lens_owner', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO model_lens_app', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO model_lens_reader', current_database());
END
$$;

-- The schema belongs to the migration owner; the others may only use it.
ALTER SCHEMA public OWNER TO model_lens_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO model_lens_app, model_lens_reader;

-- Objects created before these roles existed (a database the superuser migrated) go to the
-- owner. A sequence that belongs to a table column follows its table.
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT c.relname, c.relkind
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public'
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
           AND c.relname LIKE 'model%'
           AND pg_get_userbyid(c.relowner) <> 'model_lens_owner'
           AND NOT EXISTS (SELECT FROM pg_depend d
                            WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass
                              AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER %s %I OWNER TO model_lens_owner',
                       CASE object.relkind
                           WHEN 'v' THEN 'VIEW'
                           WHEN 'm' THEN 'MATERIALIZED VIEW'
                           WHEN 'S' THEN 'SEQUENCE'
                           ELSE 'TABLE'
                       END,
                       object.relname);
    END LOOP;
END
$$;

-- Rows, now and for every table, view and sequence the owner's future migrations create.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO model_lens_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO model_lens_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO model_lens_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE model_lens_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO model_lens_app;
ALTER DEFAULT PRIVILEGES FOR ROLE model_lens_owner IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO model_lens_app;
ALTER DEFAULT PRIVILEGES FOR ROLE model_lens_owner IN SCHEMA public
    GRANT SELECT ON TABLES TO model_lens_reader;
