/**
 * The interactive API reference at /docs: Swagger UI from the `swagger-ui-dist` package, served
 * by paylog itself. The page references only paylog-served assets, and its Content-Security-
 * Policy lets the browser load nothing from anywhere else (no CDN, no fonts, no validator badge).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** Assets served under /docs/, from swagger-ui-dist (name → content type). */
export const DOCS_ASSETS: Readonly<Record<string, string>> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const DOCS_HTML = `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>paylog API reference</title>
    <link rel="stylesheet" href="/docs/swagger-ui.css">
    <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
`;

/**
 * Swagger UI settings: our document, no external validator, nothing fetched elsewhere; the
 * schema list at the bottom is hidden (each operation shows its own schemas and examples).
 */
export const DOCS_INIT_JS = `window.onload = function () {
  window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null, defaultModelsExpandDepth: -1, presets: [SwaggerUIBundle.presets.apis] });
};
`;

const distDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const cache = new Map<string, Buffer>();

/** The bytes of one asset (read once), or undefined when `name` is not one of DOCS_ASSETS. */
export function docsAsset(name: string): { body: Buffer; type: string } | undefined {
  const type = DOCS_ASSETS[name];
  if (type === undefined || !Object.hasOwn(DOCS_ASSETS, name)) return undefined;
  let body = cache.get(name);
  if (!body) cache.set(name, (body = readFileSync(join(distDir, name))));
  return { body, type };
}
