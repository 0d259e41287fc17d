/**
 * @module proxy/error-pages
 * The HTML error page: one template for 404/429/502/503/504 (and 400/500), either
 * built in or read from `error_pages.template`. Only the code and a fixed short
 * message reach the client: never an upstream address or an internal error text.
 */
import { readFileSync } from 'node:fs'
import { ProxyError } from './errors.ts'

/** Fixed, client-safe messages per status. */
export const ERROR_MESSAGES: Readonly<Record<number, string>> = {
  400: 'Bad request',
  404: 'No site is served at this address',
  405: 'Method not allowed',
  408: 'Request timeout',
  421: 'Misdirected request',
  429: 'Too many requests, please slow down',
  431: 'Request header fields too large',
  500: 'Internal error',
  502: 'The site is not answering right now',
  503: 'The service is unavailable right now',
  504: 'The site took too long to answer',
  505: 'HTTP version not supported'
}

const REASONS: Readonly<Record<number, string>> = {
  400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 421: 'Misdirected Request', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported'
}

const BUILT_IN = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{code}} {{reason}}</title>
<style>body{font-family:system-ui,sans-serif;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;background:#f6f7f9;color:#1f2328}
main{text-align:center;padding:2rem}h1{font-size:4rem;margin:0;color:#57606a}p{font-size:1.2rem}</style></head>
<body><main><h1>{{code}}</h1><p>{{message}}</p></main></body></html>
`

/** Renders error pages; bodies are rendered once per status and reused. */
export interface ErrorPages {
  /** The page body for a status (cached Buffer). */
  body (status: number): Buffer
  reason (status: number): string
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/**
 * What ends a `$NAME` placeholder in a Mulch template: mulch-proxy's
 * `common.StringExpandVariables` replaces `$ERROR_CODE` only when a separator of
 * this set (or the end of the text) follows it, so `$ERROR_CODEX` stays as written.
 */
const MULCH_SEPARATOR = String.raw`(?=[ \t\n,.;:()\[\]{}'"/\\!?<>@#|*+\-=]|$)`
const MULCH_CODE = new RegExp(String.raw`\$ERROR_CODE` + MULCH_SEPARATOR, 'g')
const MULCH_MESSAGE = new RegExp(String.raw`\$ERROR_MESSAGE` + MULCH_SEPARATOR, 'g')

/**
 * Builds the renderer. A template file uses `{{code}}`, `{{reason}}` and
 * `{{message}}`, or mulch-proxy's `$ERROR_CODE` and `$ERROR_MESSAGE` (so Mulch's
 * `templates/error_page.html` works unchanged); a missing placeholder is fine, an
 * unreadable file is an error. The message is vmfront's fixed text, never the
 * upstream error mulch-proxy put there.
 */
export function createErrorPages (templateFile: string): ErrorPages {
  let template = BUILT_IN
  if (templateFile !== '') {
    try {
      template = readFileSync(templateFile, 'utf8')
    } catch (err) {
      throw new ProxyError('CONFIG_INVALID', `error_pages.template: cannot read ${templateFile}: ${(err as Error).message}`, { cause: err })
    }
  }
  const cache = new Map<number, Buffer>()
  const reason = (status: number): string => REASONS[status] ?? 'Error'
  return {
    reason,
    body (status: number): Buffer {
      let page = cache.get(status)
      if (page === undefined) {
        const message = ERROR_MESSAGES[status] ?? 'Error'
        page = Buffer.from(template
          .replaceAll('{{code}}', String(status))
          .replaceAll('{{reason}}', escapeHtml(reason(status)))
          .replaceAll('{{message}}', escapeHtml(message))
          .replace(MULCH_CODE, String(status))
          .replace(MULCH_MESSAGE, escapeHtml(message)))
        cache.set(status, page)
      }
      return page
    }
  }
}
