-- paylog: database roles, grants and append-only enforcement (PCI DSS 10.3.2: audit logs
-- protected from modification). Hand-written; drizzle-kit generates only the tables.

-- Roles are cluster-wide: create them once, tolerating a concurrent creator.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paylog_app') THEN
    BEGIN
      CREATE ROLE paylog_app NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paylog_auditor') THEN
    BEGIN
      CREATE ROLE paylog_auditor NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  -- The migrating user must be able to `SET ROLE paylog_app` (how the service runs its queries).
  IF NOT pg_has_role(current_user, 'paylog_app', 'MEMBER') THEN
    EXECUTE format('GRANT paylog_app TO %I', current_user);
  END IF;
  IF NOT pg_has_role(current_user, 'paylog_auditor', 'MEMBER') THEN
    EXECUTE format('GRANT paylog_auditor TO %I', current_user);
  END IF;
END
$$;
--> statement-breakpoint
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO paylog_app, paylog_auditor;
--> statement-breakpoint
-- Runtime role: INSERT and SELECT only on log tables.
GRANT SELECT, INSERT ON log_entries, merkle_nodes, tree_heads, transactions, access_entries, checkpoints TO paylog_app;
--> statement-breakpoint
GRANT SELECT, INSERT ON data_keys, keyring, revoked_certificates TO paylog_app;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE ON processors TO paylog_app;
--> statement-breakpoint
GRANT USAGE ON SEQUENCE checkpoints_id_seq TO paylog_app;
--> statement-breakpoint
-- Auditor role: read-only on everything (the ciphertext is useless without KMS).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO paylog_auditor;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION paylog_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'paylog: % on % refused: append-only log table', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;
--> statement-breakpoint
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['log_entries','merkle_nodes','tree_heads','transactions','access_entries','checkpoints']
  LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION paylog_refuse_change()', t || '_no_update_delete', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION paylog_refuse_change()', t || '_no_truncate', t);
    -- ENABLE ALWAYS: fire even under session_replication_role = replica.
    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_no_update_delete');
    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_no_truncate');
  END LOOP;
END
$$;
