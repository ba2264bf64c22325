// Opens ComfyUI's web page in Debian's chromium (headless, driven by playwright-core: no browser download),
// opens each workflow into the canvas the way the frontend does for a workflow file or a custom-node
// template (app.loadGraphData), and reports what the page then shows: dialogs and toasts, page errors,
// the graph as the frontend holds it (node classes, widgets, links, app.graph.serialize()) and the nodes
// drawn on the canvas; one screenshot per workflow. The assertions live in tests/test_browser.py.
//
//   node load_workflows.mjs config.json        (prints one JSON object on stdout)
//
// config: {"url": "http://127.0.0.1:PORT", "chromium": "/usr/bin/chromium", "outdir": "<folder for PNGs>",
//          "template_module": "ComfyUI-HyperSD", "workflows": [{"name": "...", "path": "..."}],
//          "viewport": [w, h], "timeout_ms": 60000}
// Last, the template browser (the frontend's Browse Templates command) is opened on the pack's category and the
// thumbnails it shows for the pack's workflows (/api/workflow_templates/<pack>/<name>.jpg) are reported.
// Exit status 0 with {"fatal": ...} in the JSON when the browser could not be had ("no-playwright",
// "launch") or broke ("browser").
import { closeOverlays, frames, launchChromium, printLine, sleep } from './common.mjs'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const out = printLine

const timeout = config.timeout_ms ?? 60000
const [width, height] = config.viewport ?? [1920, 1080]

const result = { startup: {}, workflows: [], blocked_requests: [] }
const browser = await launchChromium(config, out, timeout)
try {
  result.browser_version = browser.version()
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 })
  const origin = new URL(config.url).origin
  // Only the test server: the page asks api.comfy.org for release notes and the missing-models dialog
  // asks huggingface.co for file sizes, which this machine cannot reach; refuse those at once.
  await context.route('**/*', (route) => {
    const u = route.request().url()
    if (u.startsWith(origin) || u.startsWith('data:') || u.startsWith('blob:')) return route.continue()
    result.blocked_requests.push(u)
    return route.abort()
  })
  const page = await context.newPage()
  page.setDefaultTimeout(timeout)
  let sink = { console_errors: [], page_errors: [], failed_responses: [] }
  page.on('console', (m) => { if (m.type() === 'error') sink.console_errors.push(m.text()) })
  page.on('response', (r) => { if (r.status() >= 400) sink.failed_responses.push(`${r.status()} ${r.url()}`) })
  page.on('pageerror', (e) => sink.page_errors.push(String(e && e.stack || e)))

  const t0 = Date.now()
  await page.goto(config.url, { waitUntil: 'load' })
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.app.extensionManager &&
    window.LiteGraph)
  await sleep(1000) // start-up work after setup (default graph, settings, toasts)
  result.startup = { seconds: (Date.now() - t0) / 1000, ...(await overlays(page)), ...sink }
  result.frontend_version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null)
  await closeOverlays(page, 300)

  for (const wf of config.workflows) {
    sink = { console_errors: [], page_errors: [], failed_responses: [] }
    const t1 = Date.now()
    const local = readFileSync(wf.path, 'utf8')
    const entry = { name: wf.name }
    try {
      // The template browser's way (Templates > Custom Nodes > the pack): fetch the file from the server's
      // /api/workflow_templates/<pack folder>/<name>.json and load it; a dropped or opened .json file that
      // is neither API format nor a templates file goes through the same loadGraphData call.
      Object.assign(entry, await page.evaluate(async ([localText, module, name]) => {
        const app = window.app
        const local = JSON.parse(localText)
        const res = { is_api_json: app.isApiJson ? !!app.isApiJson(local) : null }
        const url = app.api?.apiURL ? app.api.apiURL(`/workflow_templates/${module}/${name}.json`)
          : `/api/workflow_templates/${module}/${name}.json`
        const r = await fetch(url)
        res.template_status = r.status
        let data = local
        if (r.ok) {
          const served = await r.json()
          res.template_same_as_file = JSON.stringify(served) === JSON.stringify(local)
          data = served
        }
        try { await app.loadGraphData(data, true, true, name) } catch (e) { res.load_error = String(e && e.stack || e) }
        return res
      }, [local, config.template_module, wf.name]))
      await frames(page, 3)
      await sleep(400) // the missing-models dialog and toasts render on the following ticks
      Object.assign(entry, await overlays(page))
      // Newer frontends report missing models in a toast (or an error overlay) with "View details", which
      // opens the list in a side panel: open it and read the model file names it shows.
      entry.missing_models_details = await viewDetails(page)
      entry.graph = await graphState(page)
      entry.stored_view = await view(page) // as the workflow's own extra.ds shows it
      await closeOverlays(page, 300)
      const bottom = await fitGraph(page, 40)
      await frames(page, 2)
      entry.fit_view = await view(page)
      entry.geometry = await geometry(page)
      entry.screenshot = join(config.outdir, wf.name + '.png')
      // the page from its top down to the graph's lower edge (menu, tabs and side bar included)
      await page.screenshot({ path: entry.screenshot, clip: { x: 0, y: 0, width, height: Math.min(height, bottom) } })
    } catch (e) {
      entry.error = String(e && e.stack || e)
    }
    Object.assign(entry, sink, { seconds: (Date.now() - t1) / 1000 })
    result.workflows.push(entry)
  }
  sink = { console_errors: [], page_errors: [], failed_responses: [] } // the template browser's own
  result.template_browser = { ...(await templateBrowser(page, config.template_module, config.outdir)), ...sink }
} catch (e) {
  result.fatal = 'browser'
  result.message = String(e && e.stack || e)
} finally {
  await browser.close().catch(() => {})
}
out(result)

// The template browser on the pack's category: the pack's thumbnails the page fetched
// (/api/workflow_templates/<pack>/<name>.jpg; newer frontends show them through blob: URLs) and the pictures the
// dialog shows, loaded or not.
async function templateBrowser(page, module, outdir) {
  const out = { fetched: [] }
  const prefix = `/workflow_templates/${module}/`
  const listener = (r) => {
    const path = new URL(r.url()).pathname
    if (path.includes(prefix) && path.endsWith('.jpg')) out.fetched.push({ path, status: r.status(),
      type: r.headers()['content-type'] ?? '' })
  }
  page.on('response', listener)
  try {
    await closeOverlays(page, 300)
    out.command = await page.evaluate(async () => {
      const commands = window.app.extensionManager?.command
      if (!commands?.execute) return null
      await commands.execute('Comfy.BrowseTemplates')
      return 'Comfy.BrowseTemplates'
    })
    await sleep(1500)
    // the pack's own category: the first visible leaf element naming the pack folder, clicked as a user would
    out.category = await page.evaluate((module) => {
      const leaf = [...document.querySelectorAll('[role="dialog"] *')].find((e) => e.children.length === 0 &&
        e.textContent.trim() === module && e.offsetParent !== null)
      if (!leaf) return null
      ;(leaf.closest('button, a, li, [role="option"], [role="button"], [role="tab"], [role="treeitem"]') ?? leaf).click()
      return leaf.textContent.trim()
    }, module)
    await page.waitForFunction(() => [...document.querySelectorAll('[role="dialog"] img')].some((i) =>
      i.complete && i.naturalWidth > 0), null, { timeout: 20000 }).catch(() => {})
    await sleep(500)
    out.images = await page.evaluate(() => [...document.querySelectorAll('[role="dialog"] img')].map((i) => ({
      src: i.getAttribute('src') ?? '', loaded: i.complete && i.naturalWidth > 0,
      size: [i.naturalWidth, i.naturalHeight] })))
    out.dialog_text = await page.evaluate(() => document.querySelector('[role="dialog"]')?.innerText.slice(0, 2000) ?? null)
    out.screenshot = join(outdir, 'template-browser.png')
    await page.screenshot({ path: out.screenshot })
    await page.keyboard.press('Escape')
    await closeOverlays(page, 300)
  } catch (e) {
    out.error = String(e && e.stack || e)
  } finally {
    page.off('response', listener)
  }
  return out
}

// Dialogs (ComfyUI's GlobalDialog: role=dialog, aria-labelledby = the dialog's key, e.g.
// global-missing-models-warning, global-load-workflow-warning, global-error) and toasts on the page.
async function overlays(page) {
  return await page.evaluate(() => {
    const text = (el) => (el ? el.innerText.trim() : '')
    const dialogs = [...document.querySelectorAll('[role="dialog"], [role="alertdialog"]')].map((d) => ({
      key: d.getAttribute('aria-labelledby') || '',
      title: text(d.querySelector('.p-dialog-header')),
      text: text(d).slice(0, 4000),
      items: [...d.querySelectorAll('.comfy-missing-models [role="option"]')].map((li) => text(li)),
    }))
    const toasts = [...document.querySelectorAll('.p-toast-message')].map((t) => text(t))
    return { dialogs, toasts }
  })
}

async function viewDetails(page) {
  const MODEL_FILE = /[\w.+-]+\.(?:safetensors|sft|gguf|ckpt|pt|pth|bin)\b/g
  const clicked = await page.evaluate(() => {
    const b = [...document.querySelectorAll('button, a, [role="button"]')].find((x) =>
      /view details/i.test(x.innerText || x.getAttribute('aria-label') || ''))
    if (!b) return null
    const where = (b.closest('.p-toast-message, [role="alert"], [role="status"], [class*="overlay"]') ?? b.parentElement)
    const text = (where?.innerText ?? '').trim().slice(0, 2000)
    b.click()
    return text
  })
  if (clicked === null) return null
  await sleep(1200)
  const panels = await page.evaluate(() => [...document.querySelectorAll(
    '[role="dialog"], [role="complementary"], aside, [class*="side-panel"], [class*="SidePanel"], [class*="right-side"], [class*="issues"], [class*="error"]')]
    .filter((e) => e.offsetParent !== null).map((e) => e.innerText.trim()).filter((t) => t).slice(0, 20))
  // the names the page lists once the details are open (the canvas draws widget values, not the page)
  const text = await page.evaluate(() => document.body.innerText)
  const names = new Set()
  for (const m of text.matchAll(MODEL_FILE)) names.add(m[0])
  return { notice: clicked, panels: panels.map((t) => t.slice(0, 3000)), files: [...names].sort() }
}

// The graph as the frontend holds it after loading.
async function graphState(page) {
  return await page.evaluate(() => {
    const app = window.app
    const registered = window.LiteGraph.registered_node_types
    const nodes = app.graph.nodes.map((n) => ({
      id: n.id,
      type: n.type,
      title: n.title,
      registered: n.type in registered,
      comfy_class: n.constructor?.comfyClass ?? null,
      has_errors: !!n.has_errors,
      mode: n.mode,
      widgets: (n.widgets ?? []).map((w) => ({
        name: w.name,
        type: w.type,
        value: w.value,
        options: Array.isArray(w.options?.values) ? w.options.values : null,
        min: w.options?.min ?? null,
        max: w.options?.max ?? null,
      })),
      inputs: (n.inputs ?? []).map((i) => ({ name: i.name, type: i.type, link: i.link ?? null })),
      outputs: (n.outputs ?? []).map((o) => ({ name: o.name, type: o.type, links: o.links ?? [] })),
    }))
    return { nodes, serialized: app.graph.serialize() }
  })
}

// Fit every node (title bars included) into the canvas, top-left aligned with a margin, no animation;
// returns the page y of the graph's lower edge plus the margin.
async function fitGraph(page, margin) {
  return await page.evaluate((margin) => {
    const c = window.app.canvas
    const rects = window.app.graph.nodes.map((n) => n.boundingRect)
    const x0 = Math.min(...rects.map((r) => r[0])), y0 = Math.min(...rects.map((r) => r[1]))
    const x1 = Math.max(...rects.map((r) => r[0] + r[2])), y1 = Math.max(...rects.map((r) => r[1] + r[3]))
    const cw = c.canvas.clientWidth, ch = c.canvas.clientHeight
    const scale = Math.min(1, (cw - 2 * margin) / (x1 - x0), (ch - 2 * margin) / (y1 - y0))
    c.ds.scale = scale
    c.ds.offset[0] = margin / scale - x0
    c.ds.offset[1] = margin / scale - y0
    c.setDirty(true, true)
    return c.canvas.getBoundingClientRect().top + (y1 - y0) * scale + 2 * margin
  }, margin)
}

// The layout as the frontend draws it, in graph units: each node's rectangle (title bar included, as
// node.boundingRect), and each link's drawn curve: the Path2D the canvas stroked for it (link.path) tested with
// isPointInStroke over a grid of points in every node that is not one of the link's two ends; where a
// frontend keeps no Path2D, the spline LiteGraph draws (control points a quarter of the distance out
// horizontally from both ends) sampled instead.
async function geometry(page) {
  return await page.evaluate(() => {
    const app = window.app
    const g = app.rootGraph ?? app.graph
    const c = app.canvas
    c.draw(true, true)
    const ctx = document.createElement('canvas').getContext('2d')
    ctx.lineWidth = c.connections_width ?? 3
    const rects = new Map(g.nodes.map((n) => [String(n.id), [...n.boundingRect]]))
    const links = g.links instanceof Map ? [...g.links.values()] : Object.values(g.links ?? {})
    const crossings = []
    let method = 'path'
    for (const l of links) {
      if (!l || l.origin_id == null || l.target_id == null) continue
      const a = g.getNodeById(l.origin_id), b = g.getNodeById(l.target_id)
      if (!a || !b) continue
      const p0 = a.getConnectionPos(false, l.origin_slot), p3 = b.getConnectionPos(true, l.target_slot)
      const path = l.path instanceof Path2D ? l.path : null
      const d = Math.hypot(p3[0] - p0[0], p3[1] - p0[1]) * 0.25
      const curve = []
      for (let i = 0; i <= 200; i++) {
        const t = i / 200, u = 1 - t
        const x = u * u * u * p0[0] + 3 * u * u * t * (p0[0] + d) + 3 * u * t * t * (p3[0] - d) + t * t * t * p3[0]
        const y = u * u * u * p0[1] + 3 * u * u * t * p0[1] + 3 * u * t * t * p3[1] + t * t * t * p3[1]
        curve.push([x, y])
      }
      if (!path) method = 'spline'
      for (const [id, r] of rects) {
        if (id === String(a.id) || id === String(b.id)) continue
        let hit = null
        if (path) {
          for (let x = r[0] + 2; x < r[0] + r[2] - 1 && !hit; x += 4)
            for (let y = r[1] + 2; y < r[1] + r[3] - 1 && !hit; y += 4)
              if (ctx.isPointInStroke(path, x, y)) hit = [Math.round(x), Math.round(y)]
        } else {
          const p = curve.find(([x, y]) => x > r[0] && x < r[0] + r[2] && y > r[1] && y < r[1] + r[3])
          if (p) hit = p.map(Math.round)
        }
        if (hit) crossings.push({ link: l.id, from: String(a.id), to: String(b.id), across: id, at: hit })
      }
    }
    const sizes = Object.fromEntries(g.nodes.map((n) => [String(n.id), { size: [...n.size],
      min: n.computeSize ? [...n.computeSize()] : null, type: n.type }]))
    return { method, render_mode: c.links_render_mode ?? null, rects: Object.fromEntries(rects), crossings, sizes }
  })
}

// What the canvas shows: ids of the nodes LiteGraph drew (LGraphCanvas.visible_nodes: nodes overlapping
// the viewport), each node's rectangle in canvas pixels (title bar included), the canvas size and the view.
async function view(page) {
  return await page.evaluate(() => {
    const c = window.app.canvas
    c.draw(true, true)
    const { scale, offset } = c.ds
    const rects = Object.fromEntries(window.app.graph.nodes.map((n) => {
      const [x, y, w, h] = n.boundingRect
      return [n.id, [(x + offset[0]) * scale, (y + offset[1]) * scale, w * scale, h * scale]]
    }))
    return { visible: c.visible_nodes.map((n) => n.id), rects, canvas: [c.canvas.clientWidth, c.canvas.clientHeight],
      scale, offset: [...offset] }
  })
}
