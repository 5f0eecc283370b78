-- paylog: the runtime role may VACUUM merkle_nodes (issue 20, storage). Hand-written.
-- Tile compaction (0012) deletes ~511 merkle_nodes rows per full tile; until a vacuum marks their
-- space free, every new node row takes new space, and autovacuum comes at most once per
-- autovacuum_naptime (default 1 min: ~200 B per leaf at 1,000 leaves/s). The compactor now
-- vacuums the table itself every few tiles (src/log/tiles/compact.ts), which needs MAINTAIN
-- (PostgreSQL 17+). MAINTAIN lets the role VACUUM, ANALYZE, CLUSTER, REINDEX and LOCK the table:
-- none of them changes a row (the append-only triggers still refuse UPDATE, DELETE and TRUNCATE),
-- and blocking the table is no more than the runtime role could do before (it can hold the
-- append lock). On older servers nothing is granted and the compactor does not ask (autovacuum only).
DO $$
BEGIN
  IF current_setting('server_version_num')::integer >= 170000 THEN
    EXECUTE 'GRANT MAINTAIN ON merkle_nodes TO paylog_app';
  END IF;
END
$$;
