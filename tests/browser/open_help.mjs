// Opens ComfyUI's web page in Debian's chromium (headless, playwright-core), then
//  1. opens each given workflow (app.loadGraphData, as opening or dropping a .json file does) and reports
//     the dialogs it raises and, for each node, whether the frontend knows its class and its widget values;
//  2. for each given node type: puts one node on an empty canvas, clicks its title to select it, clicks
//     the selection toolbox's Info button (the frontend's way to show a node's help) and reports the help
//     panel's text and the /docs/ requests the page made;
//  3. what the pack's nodes show (node_ui.mjs): the loader's recipe strength, the loader's and the scheduler's
//     display after queued runs, and one node and its help page in another locale (last: it changes the locale).
// The assertions live in tests/test_browser_help.py.
//
//   node open_help.mjs config.json        (prints one JSON object on stdout)
//
// config: {"url", "chromium", "outdir", "viewport": [w, h], "timeout_ms",
//          "workflows": [{"name", "path"}], "help": [{"type", "expect": "<text the page must show>"}],
//          "strength": [...], "runs": [...], "run_timeout_ms", "locales": [...]}  (see node_ui.mjs)
import { closeOverlays, frames, launchChromium, openInfoPanel, placeNode, printLine, sleep } from './common.mjs'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { locales, recipeStrength, runs } from './node_ui.mjs'

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const out = printLine

const timeout = config.timeout_ms ?? 60000
const [width, height] = config.viewport ?? [1600, 1000]

const result = { workflows: [], help: [] }
const browser = await launchChromium(config, out, timeout)
try {
  result.browser_version = browser.version()
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 })
  const origin = new URL(config.url).origin
  await context.route('**/*', (route) => {
    const u = route.request().url()
    if (u.startsWith(origin) || u.startsWith('data:') || u.startsWith('blob:')) return route.continue()
    return route.abort()
  })
  const page = await context.newPage()
  page.setDefaultTimeout(timeout)
  const docRequests = []
  const pageErrors = []
  page.on('response', (r) => { if (r.url().includes('/docs/')) docRequests.push(`${r.status()} ${new URL(r.url()).pathname}`) })
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)))

  await page.goto(config.url, { waitUntil: 'load' })
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.LiteGraph)
  await sleep(1000)
  result.frontend_version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null)
  await closeOverlays(page)
  result.startup_page_errors = pageErrors.splice(0)

  for (const wf of config.workflows ?? []) {
    const entry = { name: wf.name }
    try {
      const data = JSON.parse(readFileSync(wf.path, 'utf8'))
      entry.load_error = await page.evaluate(async (d) => {
        try { await window.app.loadGraphData(d, true, true, 'workflow') } catch (e) { return String(e && e.stack || e) }
        return null
      }, data)
      await sleep(600)
      Object.assign(entry, await overlays(page))
      entry.nodes = await page.evaluate(() => window.app.graph.nodes.map((n) => ({
        id: n.id, type: n.type, registered: !!window.LiteGraph.registered_node_types[n.type],
        has_errors: !!n.has_errors,
        widgets: (n.widgets ?? []).map((w) => ({ name: w.name, value: w.value })),
      })))
      await closeOverlays(page)
    } catch (e) {
      entry.error = String(e && e.stack || e)
    }
    entry.page_errors = pageErrors.splice(0)
    result.workflows.push(entry)
  }

  for (const h of config.help ?? []) {
    const entry = { type: h.type }
    docRequests.length = 0
    try {
      await closeOverlays(page)
      const title = await placeNode(page, h.type)
      entry.title = title
      await frames(page, 3)
      // click on the node's title bar (graph → client coordinates through the canvas' transform)
      const pt = await page.evaluate(() => {
        const app = window.app
        const node = app.graph.nodes[0]
        const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + 40, node.pos[1] - 15])
        const rect = app.canvas.canvas.getBoundingClientRect()
        return [rect.left + cx, rect.top + cy]
      })
      await openInfoPanel(page, pt, h.expect)
      entry.panel = await page.evaluate((title) => {
        // the help panel: the smallest element holding the page's "What eta means" section and its title
        const leaves = [...document.querySelectorAll('body *')].filter((e) =>
          e.children.length === 0 && e.textContent.trim() === 'What eta means')
        for (const leaf of leaves) {
          let el = leaf
          while (el && !el.innerText.includes(title)) el = el.parentElement
          if (el) {
            return {
              text: el.innerText.slice(0, 20000), tag: el.tagName, className: String(el.className).slice(0, 200),
              headings: [...el.querySelectorAll('h1, h2, h3')].map((h) => h.innerText.trim()),
            }
          }
        }
        return null
      }, h.expect)
      entry.doc_requests = [...docRequests]
      entry.screenshot = join(config.outdir, `help-${h.type}.png`)
      await page.screenshot({ path: entry.screenshot })
    } catch (e) {
      entry.error = String(e && e.stack || e)
      entry.doc_requests = [...docRequests]
      entry.body = await page.evaluate(() => document.body.innerText.slice(0, 3000)).catch(() => null)
    }
    entry.page_errors = pageErrors.splice(0)
    result.help.push(entry)
  }

  if (config.strength) result.strength = await recipeStrength(page, config.strength, config.outdir)
  if (config.runs) result.runs = await runs(page, config.runs, config.outdir, config.run_timeout_ms ?? 300000)
  if (config.locales) result.locales = await locales(page, config.locales, docRequests, config.outdir)
  result.page_errors = pageErrors.splice(0)
} catch (e) {
  result.fatal = 'browser'
  result.message = String(e && e.stack || e)
} finally {
  await browser.close().catch(() => {})
}
out(result)

async function overlays(page) {
  return await page.evaluate(() => {
    const text = (el) => (el ? el.innerText.trim() : '')
    const dialogs = [...document.querySelectorAll('[role="dialog"], [role="alertdialog"]')].map((d) => ({
      key: d.getAttribute('aria-labelledby') || '',
      text: text(d).slice(0, 4000),
    }))
    const toasts = [...document.querySelectorAll('.p-toast-message, [data-sonner-toast]')].map((t) => text(t))
    return { dialogs, toasts }
  })
}

