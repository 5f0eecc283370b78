-- paylog: the Merkle tree stored as full tiles (issue 20, storage). Hand-written.
--
-- Until now every complete node was one merkle_nodes row (about two rows per leaf). From here
-- on, once a C2SP tlog-tiles hash tile is full — the 256 nodes (8·L, n·256 … n·256 + 255) all
-- exist — `paylog_compact_tile(L, n)` stores those 256 hashes as ONE merkle_tiles row and
-- deletes the tile's merkle_nodes rows (levels 8·L … 8·L + 7 under it: every one of them is the
-- Merkle Tree Hash of a run of the tile's hashes). Nodes of partial tiles stay rows, so the
-- append path (the frontier is always in partial tiles) and its SQL are unchanged; readers take
-- a node from its row, else from its tile (src/log/store.ts, src/services/tiles.ts).
--
-- Append-only still holds: merkle_tiles refuses UPDATE, DELETE and TRUNCATE like every log
-- table, and the runtime role may only read it; merkle_nodes refuses UPDATE, DELETE and TRUNCATE
-- as before, except for the one DELETE of the SECURITY DEFINER function below, which builds the
-- tile from the rows themselves and first checks every node it removes against its children —
-- so no node is lost, only moved into its tile. The runtime role still has no DELETE on
-- merkle_nodes. Existing databases keep their rows and are
-- compacted tile by tile, oldest first (src/log/tiles/compact.ts).
CREATE TABLE IF NOT EXISTS "merkle_tiles" (
	"level" smallint NOT NULL,
	"idx" bigint NOT NULL,
	"hashes" bytea NOT NULL,
	PRIMARY KEY ("level", "idx"),
	CONSTRAINT "merkle_tiles_full" CHECK (octet_length("hashes") = 8192 AND "level" BETWEEN 0 AND 6 AND "idx" >= 0)
);
--> statement-breakpoint
-- Hashes are random: never try to compress them (stored out of line as they are).
ALTER TABLE "merkle_tiles" ALTER COLUMN "hashes" SET STORAGE EXTERNAL;
--> statement-breakpoint
-- merkle_nodes: UPDATE and DELETE refused as before, except while paylog_compact_tile deletes
-- the rows of a tile it has just stored and checked (a transaction-local flag it sets around its
-- one DELETE; roles without DELETE on merkle_nodes — the runtime role — cannot use it, and a
-- role with it could disable the trigger anyway). Checked in WHEN: no per-row function call.
--> statement-breakpoint
DROP TRIGGER IF EXISTS "merkle_nodes_no_update_delete" ON "merkle_nodes";
--> statement-breakpoint
CREATE TRIGGER "merkle_nodes_no_update_delete" BEFORE UPDATE OR DELETE ON "merkle_nodes" FOR EACH ROW
  WHEN (current_setting('paylog.compacting_tile', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION paylog_refuse_change();
--> statement-breakpoint
ALTER TABLE "merkle_nodes" ENABLE ALWAYS TRIGGER "merkle_nodes_no_update_delete";
--> statement-breakpoint
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'merkle_tiles_no_update_delete') THEN
    CREATE TRIGGER "merkle_tiles_no_update_delete" BEFORE UPDATE OR DELETE ON "merkle_tiles" FOR EACH ROW EXECUTE FUNCTION paylog_refuse_change();
    CREATE TRIGGER "merkle_tiles_no_truncate" BEFORE TRUNCATE ON "merkle_tiles" FOR EACH STATEMENT EXECUTE FUNCTION paylog_refuse_change();
    ALTER TABLE "merkle_tiles" ENABLE ALWAYS TRIGGER "merkle_tiles_no_update_delete";
    ALTER TABLE "merkle_tiles" ENABLE ALWAYS TRIGGER "merkle_tiles_no_truncate";
  END IF;
END
$$;
--> statement-breakpoint
-- Stores full tile (p_level, p_idx) from its level-8·p_level rows and removes the rows it
-- reproduces (see the top of this file). Returns false, changing nothing, when the tile is not
-- full or already stored; raises (changing nothing) when a node above the tile's level is not
-- the hash of its two children, so no row it deletes is anything but a hash of the tile.
-- Runs as the owner: the runtime role has no DELETE on merkle_nodes.
CREATE OR REPLACE FUNCTION paylog_compact_tile(p_level integer, p_idx bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  base integer := p_level * 8;
  n integer;
  h bytea;
  inserted integer;
  bad integer;
  lv integer;
BEGIN
  IF p_level < 0 OR p_level > 6 OR p_idx < 0 THEN
    RAISE EXCEPTION 'paylog: no tile (%, %)', p_level, p_idx USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT count(*), string_agg(hash, ''::bytea ORDER BY idx) INTO n, h
    FROM merkle_nodes WHERE level = base AND idx >= p_idx * 256 AND idx < (p_idx + 1) * 256;
  IF n <> 256 OR octet_length(h) <> 8192 THEN
    RETURN false;
  END IF;
  FOR lv IN base + 1 .. base + 7 LOOP
    SELECT count(*) INTO bad FROM merkle_nodes p
      LEFT JOIN merkle_nodes l ON l.level = lv - 1 AND l.idx = p.idx * 2
      LEFT JOIN merkle_nodes r ON r.level = lv - 1 AND r.idx = p.idx * 2 + 1
     WHERE p.level = lv AND p.idx >= (p_idx * 256) >> (lv - base) AND p.idx < ((p_idx + 1) * 256) >> (lv - base)
       AND (l.hash IS NULL OR r.hash IS NULL OR sha256('\x01'::bytea || l.hash || r.hash) IS DISTINCT FROM p.hash);
    IF bad > 0 THEN
      RAISE EXCEPTION 'paylog: tile (%, %) disagrees with its stored nodes at level %; not compacted', p_level, p_idx, lv USING ERRCODE = 'data_corrupted';
    END IF;
  END LOOP;
  INSERT INTO merkle_tiles (level, idx, hashes) VALUES (p_level, p_idx, h) ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS inserted = ROW_COUNT;
  IF inserted = 0 THEN
    RETURN false;
  END IF;
  PERFORM set_config('paylog.compacting_tile', 'on', true);
  DELETE FROM merkle_nodes
   WHERE level >= base AND level < base + 8
     AND idx >= (p_idx * 256) >> (level - base) AND idx < ((p_idx + 1) * 256) >> (level - base);
  PERFORM set_config('paylog.compacting_tile', 'off', true);
  RETURN true;
END
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION paylog_compact_tile(integer, bigint) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION paylog_compact_tile(integer, bigint) TO paylog_app;
--> statement-breakpoint
REVOKE ALL ON "merkle_tiles" FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT ON "merkle_tiles" TO paylog_app, paylog_auditor;
--> statement-breakpoint
-- Compaction deletes ~511 rows per 256 leaves: vacuum merkle_nodes after a few thousand dead rows
-- (not 20 % of the table), so their space is reused by the next inserts and the table stays the
-- size of the partial tiles plus what accrues between two vacuums.
ALTER TABLE "merkle_nodes" SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);
