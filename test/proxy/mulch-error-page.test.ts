// Mulch's templates/error_page.html works unchanged (SPEC §10): `$ERROR_CODE` and
// `$ERROR_MESSAGE` are replaced the way mulch-proxy's StringExpandVariables does.
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createErrorPages } from '../../proxy/error-pages.ts'
import { tempDir } from '../helpers/proxy-process.ts'

t.test('$ERROR_CODE and $ERROR_MESSAGE, followed by a separator or the end', async (t) => {
  const file = join(tempDir(t), 'error_page.html')
  writeFileSync(file, '<title>Error $ERROR_CODE - Oops!</title><h1>$ERROR_CODE</h1><p class="message">$ERROR_MESSAGE</p>\n$ERROR_CODEX $ERROR_CODE$ERROR_MESSAGE {{code}} $ERROR_CODE')
  const page = createErrorPages(file).body(502).toString()
  t.equal(page, '<title>Error 502 - Oops!</title><h1>502</h1><p class="message">The site is not answering right now</p>\n$ERROR_CODEX $ERROR_CODEThe site is not answering right now 502 502',
    'a longer word or a following "$" is not a placeholder, as in mulch-proxy; vmfront\'s own placeholders still work')
})

t.test('Mulch\'s own template renders with the code and a fixed, escaped message', async (t) => {
  const file = join(tempDir(t), 'error_page.html')
  // The shape of Mulch's etc/templates/error_page.html.
  writeFileSync(file, '<!DOCTYPE html>\n<html lang="en">\n\t<head>\n\t\t<title>Error $ERROR_CODE - Oops!</title>\n\t</head>\n\t<body>\n\t\t<h1>$ERROR_CODE</h1>\n                <p class="message">$ERROR_MESSAGE</p>\n\t</body>\n</html>\n')
  const pages = createErrorPages(file)
  for (const status of [404, 429, 502, 503, 504]) {
    const page = pages.body(status).toString()
    t.notMatch(page, /\$ERROR_/, `${status}: no placeholder left`)
    t.match(page, `<h1>${status}</h1>`)
  }
  t.match(pages.body(429).toString(), '<p class="message">Too many requests, please slow down</p>')
  t.notOk(readFileSync(file, 'utf8').includes('429'), 'the template file is not modified')
})
