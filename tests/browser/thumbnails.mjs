// Template thumbnails: each workflow opened in ComfyUI's own page (app.loadGraphData), the canvas alone (focus
// mode: no menus or side bars), the whole graph fitted into a 4:3 view, captured by the browser and written as
// workflows/<name>.jpg. What the template browser then shows is the workflow's graph as the canvas draws it.
// Called by workflows/build.py (python workflows/build.py), against the ComfyUI it starts.
//
//   node thumbnails.mjs config.json        (prints one JSON object on stdout)
//
// config: {"url", "chromium", "workflows": [{"name", "path", "out"}], "size": [w, h], "timeout_ms"}
import { closeOverlays, launchChromium, printLine, sleep } from './common.mjs'
import { readFileSync, writeFileSync } from 'node:fs'

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const out = printLine

const [thumbW, thumbH] = config.size ?? [640, 480]
const VIEW = [1600, 1200] // 4:3, as the thumbnail
const result = { written: [] }
const browser = await launchChromium(config, out)
try {
  const context = await browser.newContext({ viewport: { width: VIEW[0], height: VIEW[1] }, deviceScaleFactor: 1 })
  const origin = new URL(config.url).origin
  await context.route('**/*', (route) => {
    const u = route.request().url()
    return u.startsWith(origin) || u.startsWith('data:') || u.startsWith('blob:') ? route.continue() : route.abort()
  })
  const page = await context.newPage()
  page.setDefaultTimeout(config.timeout_ms ?? 60000)
  await page.goto(config.url, { waitUntil: 'load' })
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.LiteGraph)
  await sleep(1000)
  result.frontend_version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null)
  for (const wf of config.workflows) {
    const data = JSON.parse(readFileSync(wf.path, 'utf8'))
    await page.evaluate(async ([d, name]) => { await window.app.loadGraphData(d, true, true, name) }, [data, wf.name])
    await sleep(500)
    await closeOverlays(page, 300)
    await focusMode(page, true)
    const clip = await page.evaluate((margin) => {
      const c = window.app.canvas
      c.deselectAll?.()
      const rects = window.app.graph.nodes.map((n) => n.boundingRect)
      const x0 = Math.min(...rects.map((r) => r[0])), y0 = Math.min(...rects.map((r) => r[1]))
      const x1 = Math.max(...rects.map((r) => r[0] + r[2])), y1 = Math.max(...rects.map((r) => r[1] + r[3]))
      const r = c.canvas.getBoundingClientRect()
      // the largest 4:3 box inside the canvas, the graph centred in it
      const h = Math.min(r.height, r.width * 3 / 4), w = h * 4 / 3
      const scale = Math.min((w - 2 * margin) / (x1 - x0), (h - 2 * margin) / (y1 - y0), 1.2)
      c.ds.scale = scale
      c.ds.offset[0] = (w / scale - (x1 - x0)) / 2 - x0
      c.ds.offset[1] = (h / scale - (y1 - y0)) / 2 - y0
      c.setDirty(true, true)
      return { x: r.left, y: r.top, width: w, height: h }
    }, 24)
    for (let i = 0; i < 3; i++) await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())))
    await sleep(300)
    const png = await page.screenshot({ clip })
    const jpeg = await page.evaluate(async ([b64, w, h]) => {
      const img = new Image()
      img.src = 'data:image/png;base64,' + b64
      await img.decode()
      const canvas = document.createElement('canvas')
      canvas.width = w
      canvas.height = h
      const ctx = canvas.getContext('2d')
      ctx.imageSmoothingQuality = 'high'
      ctx.drawImage(img, 0, 0, w, h)
      return canvas.toDataURL('image/jpeg', 0.85).split(',')[1]
    }, [png.toString('base64'), thumbW, thumbH])
    writeFileSync(wf.out, Buffer.from(jpeg, 'base64'))
    result.written.push(wf.out)
    await focusMode(page, false)
  }
} catch (e) {
  result.fatal = 'browser'
  result.message = String(e && e.stack || e)
} finally {
  await browser.close().catch(() => {})
}
out(result)

// The frontend's focus mode (the canvas alone), where the frontend has it.
async function focusMode(page, on) {
  await page.evaluate(async (on) => {
    const store = window.app.extensionManager
    const isOn = () => store?.focusMode ?? document.querySelector('.graph-canvas-container')?.classList.contains('focus')
    if (!store?.command?.execute) return
    if (!!store.focusMode !== on) await store.command.execute('Workspace.ToggleFocusMode').catch(() => {})
    return isOn()
  }, on)
  await sleep(300)
}
