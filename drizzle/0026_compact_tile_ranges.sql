-- paylog: tile compaction reads only the tile's own rows (issue 20, CPU). Hand-written.
-- paylog_compact_tile (migration 0012) checks, level by level, that every node it is about to
-- remove is the hash of its two children, joining each level to the level below on
-- `l.idx = p.idx * 2`. Only the parents were bounded to the tile, so the planner hashed the
-- WHOLE level below — every live row of the partial tiles and every dead row the previous
-- compactions left until the next VACUUM — and its single DELETE named eight levels with a
-- range that depends on the level, so it read all of them too. pg_stat_statements under load:
-- 10–25 ms of PostgreSQL time per tile (one tile per 256 submissions: 40–90 µs per submission).
--
-- Now every read and every delete names one level and the tile's index range on it:
--   parents  level lv,     idx in [lo, hi)        lo = (n·256) >> (lv − 8L), hi = ((n+1)·256) >> (lv − 8L)
--   children level lv − 1, idx in [2·lo, 2·hi)   (implied by l.idx = 2·p.idx; stated so the scan is bounded)
-- and the delete is one statement per level. The result is the same function: the same tile
-- stored from the same rows, the same check before anything is removed (a node that is not the
-- hash of its children raises and nothing changes), the same rows removed, the same flag around
-- the delete, SECURITY DEFINER with the same search_path, the same owner and grants (CREATE OR
-- REPLACE keeps both). Its statements keep one generic index plan per connection (the pool
-- plans every statement afresh otherwise, src/db/connection.ts), never a sequential scan
-- (a plan kept from a tiny table would be one: migration 0020).
CREATE OR REPLACE FUNCTION paylog_compact_tile(p_level integer, p_idx bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_nestloop = off
AS $$
DECLARE
  base integer := p_level * 8;
  n integer;
  h bytea;
  inserted integer;
  bad integer;
  lv integer;
  lo bigint;
  hi bigint;
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
    lo := (p_idx * 256) >> (lv - base);
    hi := ((p_idx + 1) * 256) >> (lv - base);
    SELECT count(*) INTO bad FROM merkle_nodes p
      LEFT JOIN merkle_nodes l ON l.level = lv - 1 AND l.idx >= lo * 2 AND l.idx < hi * 2 AND l.idx = p.idx * 2
      LEFT JOIN merkle_nodes r ON r.level = lv - 1 AND r.idx >= lo * 2 AND r.idx < hi * 2 AND r.idx = p.idx * 2 + 1
     WHERE p.level = lv AND p.idx >= lo AND p.idx < hi
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
  FOR lv IN base .. base + 7 LOOP
    DELETE FROM merkle_nodes
     WHERE level = lv AND idx >= (p_idx * 256) >> (lv - base) AND idx < ((p_idx + 1) * 256) >> (lv - base);
  END LOOP;
  PERFORM set_config('paylog.compacting_tile', 'off', true);
  RETURN true;
END
$$;
