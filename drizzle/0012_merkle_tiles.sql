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
-- Append-only still holds, as a property of the data: merkle_tiles refuses UPDATE, DELETE and
-- TRUNCATE like every log table, and the runtime role may only read it; merkle_nodes refuses
-- UPDATE and TRUNCATE, and a DELETE only of a row whose hash its stored tile reproduces (checked
-- by the trigger, for any user) — so no node can be lost, only moved into its tile. The runtime
-- role still has no DELETE on merkle_nodes: it compacts through the SECURITY DEFINER function,
-- which builds the tile from the rows themselves. Existing databases keep their rows and are
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
-- RFC 9162 §2.1.1 MTH of the 2^k hashes of `hashes` starting at hash `first` (NULL if out of range).
CREATE OR REPLACE FUNCTION paylog_tile_subtree_hash(hashes bytea, first integer, k integer) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog AS $$
DECLARE
  n integer := 1 << k;
  cur bytea[];
BEGIN
  IF k < 0 OR k > 7 OR first < 0 OR (first + n) * 32 > octet_length(hashes) THEN
    RETURN NULL;
  END IF;
  cur := ARRAY(SELECT substring(hashes FROM (first + j) * 32 + 1 FOR 32) FROM generate_series(0, n - 1) AS j ORDER BY j);
  WHILE n > 1 LOOP
    n := n / 2;
    cur := ARRAY(SELECT sha256('\x01'::bytea || cur[2 * j + 1] || cur[2 * j + 2]) FROM generate_series(0, n - 1) AS j ORDER BY j);
  END LOOP;
  RETURN cur[1];
END
$$;
--> statement-breakpoint
-- merkle_nodes: UPDATE refused; DELETE refused unless the row's stored tile reproduces its hash.
CREATE OR REPLACE FUNCTION paylog_merkle_node_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  k integer;
  t bytea;
BEGIN
  IF TG_OP = 'DELETE' THEN
    k := OLD.level % 8;
    SELECT hashes INTO t FROM public.merkle_tiles WHERE level = OLD.level / 8 AND idx = (OLD.idx << k) >> 8;
    IF t IS NOT NULL AND public.paylog_tile_subtree_hash(t, ((OLD.idx << k) & 255)::integer, k) = OLD.hash THEN
      RETURN OLD;
    END IF;
  END IF;
  RAISE EXCEPTION 'paylog: % on % refused: append-only log table (only a node its stored tile reproduces may be removed)', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$;
--> statement-breakpoint
DROP TRIGGER IF EXISTS "merkle_nodes_no_update_delete" ON "merkle_nodes";
--> statement-breakpoint
CREATE TRIGGER "merkle_nodes_no_update_delete" BEFORE UPDATE OR DELETE ON "merkle_nodes" FOR EACH ROW EXECUTE FUNCTION paylog_merkle_node_change();
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
-- full or already stored. Runs as the owner: the runtime role has no DELETE on merkle_nodes.
CREATE OR REPLACE FUNCTION paylog_compact_tile(p_level integer, p_idx bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  base integer := p_level * 8;
  n integer;
  h bytea;
  inserted integer;
BEGIN
  IF p_level < 0 OR p_level > 6 OR p_idx < 0 THEN
    RAISE EXCEPTION 'paylog: no tile (%, %)', p_level, p_idx USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT count(*), string_agg(hash, ''::bytea ORDER BY idx) INTO n, h
    FROM merkle_nodes WHERE level = base AND idx >= p_idx * 256 AND idx < (p_idx + 1) * 256;
  IF n <> 256 OR octet_length(h) <> 8192 THEN
    RETURN false;
  END IF;
  INSERT INTO merkle_tiles (level, idx, hashes) VALUES (p_level, p_idx, h) ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS inserted = ROW_COUNT;
  IF inserted = 0 THEN
    RETURN false;
  END IF;
  DELETE FROM merkle_nodes
   WHERE level >= base AND level < base + 8
     AND idx >= (p_idx * 256) >> (level - base) AND idx < ((p_idx + 1) * 256) >> (level - base);
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
