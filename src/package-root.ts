/**
 * The package root: the directory holding paylog's package.json (and `drizzle/`), found by
 * walking up from this module. The same answer from `src/` (tsx) and from the build in `dist/`,
 * so nothing depends on how deep a compiled file sits.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `name` in paylog's package.json (a package.json of another project on the way up is skipped). */
const PACKAGE_NAME = 'paylog';

function isPaylogRoot(dir: string): boolean {
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) return false;
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    return false;
  }
}

/** The first ancestor of this module whose package.json names paylog. */
export function packageRoot(): string {
  const start = fileURLToPath(import.meta.url);
  for (let d = dirname(start); ; d = dirname(d)) {
    if (isPaylogRoot(d)) return d;
    if (dirname(d) === d) throw new Error(`paylog's package.json not found above ${start}`);
  }
}
