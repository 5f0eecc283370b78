-- paylog: witness_cosignatures is a log table like the others: the service may only INSERT and
-- SELECT, auditors read, and UPDATE/DELETE/TRUNCATE are refused by ENABLE ALWAYS triggers
-- (they also fire under session_replication_role = replica). Hand-written.
GRANT SELECT, INSERT ON witness_cosignatures TO paylog_app;
--> statement-breakpoint
GRANT USAGE ON SEQUENCE witness_cosignatures_id_seq TO paylog_app;
--> statement-breakpoint
GRANT SELECT ON witness_cosignatures TO paylog_auditor;
--> statement-breakpoint
CREATE TRIGGER witness_cosignatures_no_update_delete BEFORE UPDATE OR DELETE ON witness_cosignatures FOR EACH ROW EXECUTE FUNCTION paylog_refuse_change();
--> statement-breakpoint
CREATE TRIGGER witness_cosignatures_no_truncate BEFORE TRUNCATE ON witness_cosignatures FOR EACH STATEMENT EXECUTE FUNCTION paylog_refuse_change();
--> statement-breakpoint
ALTER TABLE witness_cosignatures ENABLE ALWAYS TRIGGER witness_cosignatures_no_update_delete;
--> statement-breakpoint
ALTER TABLE witness_cosignatures ENABLE ALWAYS TRIGGER witness_cosignatures_no_truncate;
