/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core) on a
 * three-daemon mesh with API tokens: the page asks for the token, shows the mesh, submits a job
 * and watches it succeed, shows its fragments and a fragment's log, cancels a running job with
 * its button, and leaves a screenshot in test-artifacts/dashboard.png.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, ROOT, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { TEST_CONFIG } from './helpers.ts'

const CHROMIUM = '/usr/bin/chromium'
const TOKEN = 'token-of-ops-0123456789ab'
const SCREENSHOT = join(ROOT, 'test-artifacts', 'dashboard.png')
const root = process.getuid?.() === 0
const missing = !existsSync(CHROMIUM)
if (missing && !root) {
  console.warn(
    `dashboard.test.ts skipped: ${CHROMIUM} is missing and this is not root (install it: apt-get install -y chromium; .ci/run does)`
  )
}

const CONFIG = {
  ...TEST_CONFIG,
  apiTokens: { ops: TOKEN },
  tenants: { ops: { admin: true } },
  tasks: {
    ...TEST_CONFIG.tasks,
    // A line on stderr per fragment, for the log view.
    noisy: { command: ['sh', '-c', 'echo "working on $SHOAL_FRAGMENT_PATH" >&2; sleep 0.3; cat'] },
    sleepy: { command: ['sh', '-c', 'sleep 60; cat'] }
  }
}

describe.skipIf(missing && !root)('the dashboard in a browser', () => {
  let mesh: DaemonProcess[] = []
  let browser: Browser | undefined
  let client: ShoalClient

  beforeAll(async () => {
    if (missing) throw new Error(`${CHROMIUM} is missing: run .ci/run, or apt-get install -y chromium`)
    mesh = await startMesh({ count: 3, config: CONFIG })
    client = new ShoalClient((mesh[0] as DaemonProcess).api, { token: TOKEN })
    await waitUntil(
      'three alive, synced daemons',
      async () => (await client.peers()).filter((p) => p.state === 'alive' && p.synced).length === 3
    )
    // Chromium will not start as root with its sandbox on (CI runs as root).
    browser = await chromium.launch({ executablePath: CHROMIUM, args: root ? ['--no-sandbox'] : [] })
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await stopAll(mesh)
  })

  it('asks for the token, shows the mesh, runs a job to SUCCEEDED with its fragments and logs, and cancels another', async () => {
    const page: Page = await (browser as Browser).newPage({ viewport: { width: 1280, height: 900 } })
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
    page.on('console', (m) => {
      // The 401 before the token is typed in is expected (and a 404 from a daemon without the
      // drain route); a refused script or style is not.
      if (m.type() === 'error' && !/status of 40[14]/.test(m.text())) problems.push(m.text())
    })
    const urls: string[] = []
    const eventAuth: Array<string | undefined> = []
    page.on('request', (r) => {
      urls.push(r.url())
      if (/\/events$/.test(r.url())) eventAuth.push(r.headers()['authorization'])
    })
    const status = page.locator('p.status')

    await page.goto(`${(mesh[0] as DaemonProcess).api}/`)
    // Without a token, the API refuses and the page says so on its one status line.
    await expect.poll(() => status.textContent(), { timeout: 15_000 }).toMatch(/^refresh: 401 UNAUTHORIZED: /)
    await page.getByLabel('API token').fill(TOKEN)
    await page.getByRole('button', { name: 'Use token' }).click()

    // The mesh: three daemons, alive, this one marked.
    const peerRows = page.locator('tr[data-peer]')
    await expect.poll(() => peerRows.count(), { timeout: 15_000 }).toBe(3)
    await expect.poll(() => page.locator('tr[data-peer][data-state="alive"]').count()).toBe(3)
    expect(await page.locator('tr[data-peer="d1"]').textContent()).toContain('(this daemon)')
    expect(await status.textContent()).toBe('')

    // Submit through the page's form; the page selects the new job and follows it to SUCCEEDED.
    await page.locator('#spec').fill('{"task":"noisy","range":{"start":0,"end":12},"fragmentSize":2}')
    await page.getByRole('button', { name: 'Submit' }).click()
    await expect.poll(() => status.textContent(), { timeout: 15_000 }).toBe('submit: done')
    const jobs = await client.jobs()
    expect(jobs).toHaveLength(1)
    const done = jobs[0]!
    const doneRow = page.locator(`tr[data-job="${done.id}"]`)
    await expect.poll(() => doneRow.getAttribute('data-state'), { timeout: 30_000 }).toBe('SUCCEEDED')
    expect(await doneRow.textContent()).toContain('6 / 6')
    expect((await client.job(done.id)).state).toBe('SUCCEEDED')
    // Its fragments as a grid, every cell green once it succeeded; a cell opens its try's log.
    const cells = page.locator('.grid .cell')
    await expect.poll(() => page.locator('.grid .cell.SUCCEEDED').count(), { timeout: 15_000 }).toBe(6)
    expect(await cells.count()).toBe(6)
    await cells.nth(2).click()
    const path = await cells.nth(2).getAttribute('data-path')
    await expect.poll(() => page.locator('.log pre').textContent()).toBe(`working on ${path}\n`)

    // A long job, submitted elsewhere, shows up RUNNING; its Cancel button cancels it everywhere.
    const long = await client.submit({ task: 'sleepy', items: ['a', 'b', 'c'], fragmentSize: 1 })
    const longRow = page.locator(`tr[data-job="${long.id}"]`)
    await expect.poll(() => longRow.getAttribute('data-state'), { timeout: 30_000 }).toBe('RUNNING')
    // Followed live through its event stream (the token in a header, never in a URL).
    await expect.poll(() => longRow.locator('.live').count()).toBe(1)
    await longRow.getByRole('button', { name: 'Cancel' }).click()
    await expect.poll(() => longRow.getAttribute('data-state'), { timeout: 15_000 }).toBe('CANCELLED')
    // The row may show CANCELLED (from the job's stream) before the cancel's own answer is in.
    await expect.poll(() => status.textContent(), { timeout: 15_000 }).toBe(`cancel ${long.id}: done`)
    expect((await client.job(long.id)).state).toBe('CANCELLED')
    expect(eventAuth.length).toBeGreaterThan(0)
    expect(eventAuth.every((a) => a === `Bearer ${TOKEN}`)).toBe(true)
    expect(urls.filter((u) => u.includes(TOKEN))).toEqual([])
    // A cancelled job can run again: its Retry button is there.
    expect(await longRow.getByRole('button', { name: 'Retry' }).count()).toBe(1)

    // Drain and undrain d2 from its row (POST /v1/peers/:peerId/drain): done, shown, and undone;
    // a daemon without the route says so on the status line, in one line.
    const d2 = page.locator('tr[data-peer="d2"]')
    await d2.getByRole('button', { name: 'Drain' }).click()
    await expect.poll(() => status.textContent(), { timeout: 15_000 }).toMatch(/^drain d2: /)
    if ((await status.textContent()) === 'drain d2: done') {
      await expect.poll(() => d2.locator('td.draining').textContent(), { timeout: 15_000 }).toBe('yes')
      await d2.getByRole('button', { name: 'Undrain' }).click()
      await expect.poll(() => d2.locator('td.draining').textContent(), { timeout: 15_000 }).toBe('no')
    } else {
      expect(await status.textContent()).toMatch(
        /^drain d2: 404 NOT_FOUND: no route POST \/v1\/peers\/\S+\/drain$/
      )
    }

    // The page's event parser keeps data across chunks and CRLF, skips comments and keeps ids.
    // (A string, not a function: vitest would rewrite a function's import() for Node.)
    const chunks = ': keep-alive\r\n\r\nid: 7\nevent: job\ndata: {"a":\ndata: 1}\n\nevent: job\ndata: {'
    const parsed = await page.evaluate(
      `import('/ui/api.js').then((m) => m.parseEvents(${JSON.stringify(chunks)}))`
    )
    expect(parsed).toEqual({
      events: [{ event: 'job', id: '7', data: '{"a":\n1}' }],
      rest: 'event: job\ndata: {'
    })

    // Show the succeeded job with a log open, and keep a picture of it.
    await doneRow.locator('a').click()
    await page.locator('.grid .cell').first().click()
    await expect.poll(() => page.locator('.log pre').textContent()).toMatch(/^working on /)
    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    expect(existsSync(SCREENSHOT)).toBe(true)
    expect(problems).toEqual([])
  }, 180_000)
})
