// Bounded route-file fuzzing for `npm test` (the torture runner calls fuzzRouteFiles with 10,000 files).
import t from 'tap'
import { fuzzRouteFiles } from './route-fuzz.ts'

t.test('400 fuzzed route files: no crash, no partial table, clear bounded messages', async (t) => {
  const report = await fuzzRouteFiles(400, 9)
  t.comment(JSON.stringify({ ...report, violations: report.violations.length }))
  t.same(report.violations, [], 'no violation')
  t.equal(report.files, 400, 'every file was reloaded')
  t.ok(report.accepted > 20 && report.refused > 100, `both outcomes exercised (${report.accepted} accepted, ${report.refused} refused)`)
  t.ok(report.longestLogLine < 4096, `longest log line ${report.longestLogLine} characters`)
})
