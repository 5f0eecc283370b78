/**
 * `export-log`: writes an NDJSON export (format in src/log/export-format.ts) of the latest
 * checkpoint's tree, read through the auditor's client.
 *
 * Contract: the file is created exclusively (`wx`: never overwrites); nothing fetched is trusted
 * here — `verify-log --file` verifies the export.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { EXPORT_VERSION } from '../log/export-format.js';
import type { LogClient } from './log-client.js';
import { checkpointSize } from './verify-sources.js';

function writeLine(out: NodeJS.WritableStream, obj: unknown): Promise<void> | undefined {
  const ok = out.write(`${JSON.stringify(obj)}\n`);
  return ok ? undefined : once(out, 'drain').then(() => undefined);
}

/** Writes an NDJSON export (format in the module comment) of the latest checkpoint's tree. */
export async function exportLog(client: LogClient, outPath: string, onProgress?: (n: number, total: number) => void): Promise<{ size: number; origin: string }> {
  const checkpoint = await client.checkpoint();
  const origin = checkpoint.split('\n')[0] ?? '';
  const size = checkpointSize(checkpoint);
  const keys = await client.keys();
  const out = createWriteStream(outPath, { flags: 'wx' });
  const done = once(out, 'finish');
  try {
    await writeLine(out, { type: 'paylog-export', version: EXPORT_VERSION, origin });
    await writeLine(out, { type: 'checkpoint', note: checkpoint });
    for (const vkey of keys.vkeys) await writeLine(out, { type: 'key', vkey });
    let n = 0;
    for await (const e of client.entries(0, size)) {
      await writeLine(out, { type: 'entry', index: e.index, leaf: Buffer.from(e.leaf).toString('base64') });
      onProgress?.(++n, size);
    }
  } finally {
    out.end();
  }
  await done;
  return { size, origin };
}
