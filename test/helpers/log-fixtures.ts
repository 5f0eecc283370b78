/**
 * `test/fixtures/log-v2-before-v3.ndjson`: an `npm run export-log` of a log written by paylog at
 * commit 8db391c (leaf format v2: a card, a US bank account and an IBAN transaction, a release,
 * an early shred, a rotation), and the dev log key of the run that wrote it (a public key).
 */
export const V2_LOG_FIXTURE = 'test/fixtures/log-v2-before-v3.ndjson';
export const V2_LOG_FIXTURE_VKEY = 'dev.paylog.invalid/log+0b5624e3+AdYhLAhzp+pSE3ePt2fg+8MtyfckAJAJj+ygD13TiLJ5';

/**
 * `test/fixtures/log-v2-then-v3.ndjson`: the same log after the service built from issue 17 was
 * started on its database (migrations 0006–0009 applied to it) and appended in leaf format v3
 * (a new card transaction, a replay, two releases): 13 entries of format v2, then 3 of format v3.
 * Same log key.
 */
export const MIXED_LOG_FIXTURE = 'test/fixtures/log-v2-then-v3.ndjson';
