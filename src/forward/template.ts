/**
 * Forward templates (issue 18): a request body written by the checkout with placeholders such as
 * `{{card.number}}`, filled in by paylog with the payment method's values.
 *
 * Contract (pure, no I/O):
 * - A template is JSON, `application/x-www-form-urlencoded` or XML, chosen by the content type
 *   the caller sends. The parser finds each placeholder's POSITION (JSON string or bare value,
 *   form field, XML text or attribute value) and the filler encodes the value for exactly that
 *   position, so no value can change the request's structure (a holder name `"`, `</x>`, `&`
 *   or `{{` stays a string / text / field value).
 * - Values are inserted whole: no filters, no slicing.
 * - Anything that is not a placeholder at an allowed position is refused (TEMPLATE_INVALID):
 *   an unknown name, `{{` that is not a placeholder, a placeholder in an XML tag name, comment,
 *   CDATA section or processing instruction, XML with a DTD, entity declaration or entity
 *   reference other than the five predefined ones and character references.
 * - The template's literal text MUST NOT hold a card-number-like value (the one PAN detector):
 *   the checkout never holds card data, and the access entry carries the template's digest.
 */
import { PaylogError } from '../errors.js';
import { containsPanLikeNumber } from '../validation/identifiers.js';

/** Every placeholder name (contract v1.2). */
const PLACEHOLDERS = [
  'card.number',
  'card.cvc',
  'card.expiryMonth',
  'card.expiryYear',
  'card.expiryYear2',
  'card.holderName',
  'bank.accountNumber',
  'bank.routingNumber',
  'bank.accountType',
  'iban.iban',
  'iban.bic',
  'amount.value',
  'amount.currency',
  'transactionId',
] as const;
export type PlaceholderName = (typeof PLACEHOLDERS)[number];

/** Placeholders a bare JSON position receives as a JSON number (all digits, no leading-zero issue). */
const NUMERIC_PLACEHOLDERS: ReadonlySet<PlaceholderName> = new Set(['amount.value', 'card.expiryMonth', 'card.expiryYear', 'card.expiryYear2']);

export type TemplateKind = 'json' | 'form' | 'xml';

/** Where in the body a placeholder stands; decides its encoding. */
export type Position = 'json-string' | 'json-bare' | 'form' | 'xml-text' | 'xml-attribute';

export interface ParsedTemplate {
  kind: TemplateKind;
  /** Literal text and placeholders, in order. */
  parts: ReadonlyArray<string | { name: PlaceholderName; position: Position }>;
  /** The distinct placeholders used. */
  names: ReadonlySet<PlaceholderName>;
}

/** Largest template accepted, in characters. */
export const MAX_TEMPLATE_CHARS = 64 * 1024;

const PLACEHOLDER = /\{\{([A-Za-z0-9.]+)\}\}/y;
const KNOWN: ReadonlySet<string> = new Set(PLACEHOLDERS);

function invalid(message: string): PaylogError {
  return new PaylogError('TEMPLATE_INVALID', message);
}

/** The template kind of a content type (media type only, parameters ignored), or undefined. */
export function templateKindOf(contentType: string | undefined): TemplateKind | undefined {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (media === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(media)) return 'json';
  if (media === 'application/x-www-form-urlencoded') return 'form';
  if (media === 'application/xml' || media === 'text/xml' || /^application\/[a-z0-9.+-]+\+xml$/.test(media)) return 'xml';
  return undefined;
}

/** The placeholder starting at `i` (text begins with `{{`), or a refusal. */
function placeholderAt(text: string, i: number): { name: PlaceholderName; end: number } {
  PLACEHOLDER.lastIndex = i;
  const m = PLACEHOLDER.exec(text);
  if (!m || !KNOWN.has(m[1]!)) throw invalid(`"{{" must start a placeholder, one of ${PLACEHOLDERS.map((p) => `{{${p}}}`).join(' ')}`);
  return { name: m[1] as PlaceholderName, end: i + m[0].length };
}

/** Splits `text` at placeholders; `positionAt(i)` names the position of one starting at `i`. */
function split(text: string, positionAt: (i: number) => Position | string): ParsedTemplate['parts'] {
  const parts: (string | { name: PlaceholderName; position: Position })[] = [];
  let last = 0;
  for (let i = text.indexOf('{{'); i !== -1; i = text.indexOf('{{', last)) {
    const { name, end } = placeholderAt(text, i);
    const position = positionAt(i);
    if (!isPosition(position)) throw invalid(`placeholder {{${name}}} is ${position}; placeholders may stand only in values`);
    if (i > last) parts.push(text.slice(last, i));
    parts.push({ name, position });
    last = end;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

const POSITIONS: ReadonlySet<string> = new Set<Position>(['json-string', 'json-bare', 'form', 'xml-text', 'xml-attribute']);
function isPosition(p: string): p is Position {
  return POSITIONS.has(p);
}

/**
 * JSON positions: inside a string literal, or a bare value. Returns a map from each `{{` offset
 * to its position; the template with every placeholder replaced by a neutral value MUST parse.
 */
function jsonPositions(text: string): (i: number) => Position {
  const inString = new Map<number, boolean>();
  let str = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (str) {
      if (c === '\\') i++;
      else if (c === '"') str = false;
      else if (c === '{' && text[i + 1] === '{') inString.set(i, true);
    } else if (c === '"') str = true;
    else if (c === '{' && text[i + 1] === '{') {
      inString.set(i, false);
      i++;
    }
  }
  return (i) => (inString.get(i) ? 'json-string' : 'json-bare');
}

/** XML positions by a small scanner; refuses DTDs, entity declarations and unknown entity references. */
function xmlPositions(text: string): (i: number) => Position | string {
  type State = 'text' | 'tag' | 'attr' | 'comment' | 'cdata' | 'pi';
  const at = new Map<number, Position | string>();
  let state: State = 'text';
  let quote = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const rest = (n: number) => text.slice(i, i + n);
    if (c === '{' && text[i + 1] === '{') {
      at.set(i, state === 'text' ? 'xml-text' : state === 'attr' ? 'xml-attribute' : `in an XML ${state === 'tag' ? 'tag' : state === 'pi' ? 'processing instruction' : state === 'cdata' ? 'CDATA section' : 'comment'}`);
      i++;
      continue;
    }
    switch (state) {
      case 'text':
      case 'attr':
        if (c === '&') {
          const ref = /^&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});/.exec(text.slice(i, i + 12));
          if (!ref) throw invalid('XML templates may use only the predefined entities (&amp; &lt; &gt; &quot; &apos;) and character references');
        }
        if (state === 'attr') {
          if (c === quote) state = 'tag';
          else if (c === '<') throw invalid('"<" is not allowed in an XML attribute value');
        } else if (c === '<') {
          if (rest(4) === '<!--') state = 'comment';
          else if (rest(9) === '<![CDATA[') state = 'cdata';
          else if (rest(2) === '<?') state = 'pi';
          else if (rest(2) === '<!') throw invalid('XML templates must not contain a DTD or declarations (<!DOCTYPE, <!ENTITY)');
          else state = 'tag';
        }
        break;
      case 'tag':
        if (c === '"' || c === "'") {
          state = 'attr';
          quote = c;
        } else if (c === '>') state = 'text';
        break;
      case 'comment':
        if (rest(3) === '-->') state = 'text';
        break;
      case 'cdata':
        if (rest(3) === ']]>') state = 'text';
        break;
      case 'pi':
        if (rest(2) === '?>') state = 'text';
        break;
    }
  }
  if (state !== 'text') throw invalid('XML template ends inside a tag, comment, CDATA section or processing instruction');
  return (i) => at.get(i) ?? 'xml-text';
}

/** Neutral stand-in per position, to check that the template's own structure is valid. */
function probeValue(name: PlaceholderName, position: Position): string {
  if (position === 'json-bare') return NUMERIC_PLACEHOLDERS.has(name) ? '0' : '"x"';
  return 'x';
}

/**
 * Parses a template of `kind`. Throws TEMPLATE_INVALID for anything but placeholders at value
 * positions, an invalid JSON structure, XML declarations or entities, or a card-number-like
 * literal (the message never repeats the template).
 */
export function parseTemplate(text: string, kind: TemplateKind): ParsedTemplate {
  if (text.length > MAX_TEMPLATE_CHARS) throw invalid(`template must be at most ${MAX_TEMPLATE_CHARS} characters`);
  if (containsPanLikeNumber(text)) throw invalid('template must not contain a card number: use {{card.number}}');
  const positionAt = kind === 'json' ? jsonPositions(text) : kind === 'xml' ? xmlPositions(text) : () => 'form' as const;
  const parts = split(text, positionAt);
  if (kind === 'json') {
    const probe = parts.map((p) => (typeof p === 'string' ? p : probeValue(p.name, p.position))).join('');
    try {
      JSON.parse(probe);
    } catch {
      throw invalid('template must be JSON once each placeholder stands for a value (a placeholder inside a string, or alone as a value)');
    }
  }
  const names = new Set(parts.flatMap((p) => (typeof p === 'string' ? [] : [p.name])));
  return { kind, parts, names };
}

const XML_TEXT_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Characters XML 1.0 cannot carry at all (even escaped): refused rather than dropped. */
const XML_FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/** `value` encoded for `position` (the one place each position's encoding is decided). */
export function encodeFor(position: Position, name: PlaceholderName, value: string): string {
  switch (position) {
    case 'json-string':
      return JSON.stringify(value).slice(1, -1);
    case 'json-bare':
      return NUMERIC_PLACEHOLDERS.has(name) && /^[0-9]{1,15}$/.test(value) ? String(Number(value)) : JSON.stringify(value);
    case 'form':
      return encodeURIComponent(value).replace(/%20/g, '+');
    case 'xml-text':
    case 'xml-attribute':
      if (XML_FORBIDDEN.test(value)) throw invalid(`the value of {{${name}}} holds a character XML cannot carry`);
      return value.replace(/[&<>"']/g, (c) => XML_TEXT_ESCAPES[c]!);
  }
}

/**
 * Fills `t` with `values`. Every placeholder used MUST have a value (TEMPLATE_INVALID names the
 * placeholder, never a value). Returns the body and the exact values substituted.
 */
export function fillTemplate(t: ParsedTemplate, values: Readonly<Partial<Record<PlaceholderName, string>>>): { body: string; substituted: Map<PlaceholderName, string> } {
  const substituted = new Map<PlaceholderName, string>();
  const out: string[] = [];
  for (const p of t.parts) {
    if (typeof p === 'string') {
      out.push(p);
      continue;
    }
    const v = values[p.name];
    if (v === undefined) throw invalid(`{{${p.name}}} has no value for this transaction's payment method`);
    substituted.set(p.name, v);
    out.push(encodeFor(p.position, p.name, v));
  }
  return { body: out.join(''), substituted };
}
