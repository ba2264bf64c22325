// What the pack's nodes show in the real frontend (used by open_help.mjs, on its page and server):
//  - recipeStrength: the LoRA loader's strength widget while strength_from is 'recipe' (opened workflows, then
//    the user's own edits through the widgets' setValue, the path a click or a typed value takes);
//  - runs: workflows queued from the page (app.graphToPrompt + api.queuePrompt, what the Queue button does),
//    each step's widget edits applied first; after each run, the text and plot the nodes show;
//  - locale: the Comfy.Locale setting switched as the settings dialog does; a new node's title and the node
//    help page in that language.
// Each function returns plain JSON for tests/test_browser_help.py.
import { closeOverlays, frames, openInfoPanel, placeNode, sleep } from './common.mjs'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

// In the page: helpers every check uses (widgets by name, the user's way of changing one, the loader's state).
async function installHelpers(page) {
  await page.evaluate(() => {
    if (window.__hsd) return
    const app = window.app
    const byType = (type) => app.graph.nodes.filter((n) => n.type === type)
    const widget = (node, name) => node.widgets?.find((w) => w.name === name)
    const userSet = (node, name, value) => {
      const w = widget(node, name)
      if (!w) throw new Error(`node ${node.id} ${node.type} has no widget ${name}`)
      if (typeof w.setValue === 'function') w.setValue(value, { e: undefined, node, canvas: app.canvas })
      else {
        w.value = value
        w.callback?.(value, app.canvas, node, [0, 0], undefined)
      }
      app.canvas.setDirty(true, true)
    }
    const loaderState = (node) => ({
      id: String(node.id),
      values: Object.fromEntries((node.widgets ?? []).map((w) => [w.name, w.value])),
      strength_disabled: !!widget(node, 'strength')?.disabled,
    })
    const panel = (node) => {
      const w = widget(node, 'hypersd_panel')
      const el = w && (w.element ?? w.inputEl)
      if (!el) return null
      const rect = el.getBoundingClientRect()
      return { text: el.dataset.text ?? '', shown_text: el.innerText, plot_points: Number(el.querySelector('svg')?.dataset.points ?? 0),
        visible: rect.width > 0 && rect.height > 0, serialize: w.serialize, node_size: [...node.size] }
    }
    const done = {}
    for (const kind of ['execution_success', 'execution_error', 'execution_interrupted']) {
      app.api.addEventListener(kind, (e) => { done[e.detail?.prompt_id] = { kind, detail: e.detail } })
    }
    window.__hsd = { byType, widget, userSet, loaderState, panel, done }
  })
}

async function openWorkflow(page, path, name) {
  const data = JSON.parse(readFileSync(path, 'utf8'))
  const error = await page.evaluate(async ([d, n]) => {
    try { await window.app.loadGraphData(d, true, true, n) } catch (e) { return String(e && e.stack || e) }
    return null
  }, [data, name])
  await frames(page, 2)
  return error
}

const LOADER = 'HyperSDLoraLoader'

// The strength the loader shows, on opened workflows and after the user's edits; `edits` are
// [{workflow, steps: [{set: {widget: value}} ...]}]; every state also reports what graphToPrompt sends.
export async function recipeStrength(page, cases, outdir) {
  await installHelpers(page)
  const out = []
  for (const c of cases) {
    const entry = { name: c.name, states: [] }
    try {
      entry.load_error = await openWorkflow(page, c.path, c.name)
      await closeOverlays(page)
      const record = async (label) => {
        const state = await page.evaluate(async (type) => {
          const node = window.__hsd.byType(type)[0]
          const prompt = await window.app.graphToPrompt()
          const sent = (prompt.output ?? prompt)[String(node.id)]?.inputs ?? null
          return { ...window.__hsd.loaderState(node), sent }
        }, LOADER)
        entry.states.push({ label, ...state })
      }
      await record('opened')
      for (const step of c.steps ?? []) {
        await page.evaluate(([type, set]) => {
          const node = window.__hsd.byType(type)[0]
          for (const [name, value] of set) window.__hsd.userSet(node, name, value)
        }, [LOADER, Object.entries(step.set)])
        await frames(page, 1)
        await record(step.label)
      }
      if (c.screenshot) {
        entry.screenshot = join(outdir, `${c.name}.png`)
        await shootNodes(page, [LOADER], entry.screenshot)
      }
    } catch (e) {
      entry.error = String(e && e.stack || e)
    }
    out.push(entry)
  }
  return out
}

// A screenshot of the given node types (all nodes when null) and a margin, at scale 1 or smaller to fit the page.
async function shootNodes(page, types, path, margin = 24) {
  const clip = await page.evaluate(([types, margin]) => {
    const app = window.app
    const c = app.canvas
    const nodes = app.graph.nodes.filter((n) => !types || types.includes(n.type))
    const rects = nodes.map((n) => n.boundingRect)
    const x0 = Math.min(...rects.map((r) => r[0])), y0 = Math.min(...rects.map((r) => r[1]))
    const x1 = Math.max(...rects.map((r) => r[0] + r[2])), y1 = Math.max(...rects.map((r) => r[1] + r[3]))
    const r = c.canvas.getBoundingClientRect()
    const left = 80, top = 80
    const scale = Math.min(1, (r.width - left - 2 * margin) / (x1 - x0), (r.height - top - 2 * margin) / (y1 - y0))
    c.ds.scale = scale
    c.ds.offset[0] = left / scale - x0
    c.ds.offset[1] = top / scale - y0
    c.setDirty(true, true)
    return { x: r.left + left - margin, y: r.top + top - margin, width: (x1 - x0) * scale + 2 * margin,
      height: (y1 - y0) * scale + 2 * margin }
  }, [types, margin])
  await frames(page, 3)
  await sleep(200)
  await page.screenshot({ path, clip })
}

// Queue each run's workflow, step by step; after each step the loader's and the scheduler's display.
export async function runs(page, list, outdir, timeoutMs) {
  await installHelpers(page)
  const out = []
  for (const run of list) {
    const entry = { name: run.name, steps: [] }
    try {
      entry.load_error = await openWorkflow(page, run.path, run.name)
      await closeOverlays(page)
      for (const step of run.steps) {
        const t0 = Date.now()
        const queued = await page.evaluate(async (edits) => {
          const h = window.__hsd
          for (const e of edits) {
            const node = h.byType(e.type)[0] ?? window.app.graph.getNodeById(e.id)
            h.userSet(node, e.widget, e.value)
          }
          const prompt = await window.app.graphToPrompt()
          const res = await window.app.api.queuePrompt(0, prompt)
          return { prompt_id: res?.prompt_id ?? null, error: res?.error ?? null }
        }, step.edits ?? [])
        const result = { label: step.label, prompt_id: queued.prompt_id }
        if (queued.prompt_id) {
          await page.waitForFunction((id) => !!window.__hsd.done[id], queued.prompt_id, { timeout: timeoutMs })
          await frames(page, 3)
          await sleep(200)
          Object.assign(result, await page.evaluate((id) => {
            const h = window.__hsd
            const show = (type) => h.byType(type).map((n) => ({ id: String(n.id), panel: h.panel(n) }))
            const d = h.done[id]
            return { status: d.kind, error: d.kind === 'execution_success' ? null : JSON.stringify(d.detail).slice(0, 3000),
              loaders: show('HyperSDLoraLoader'), schedulers: show('HyperSDScheduler') }
          }, queued.prompt_id))
        } else {
          result.status = 'not queued'
          result.error = JSON.stringify(queued.error).slice(0, 3000)
        }
        result.seconds = (Date.now() - t0) / 1000
        if (step.screenshot) {
          result.screenshot = join(outdir, `${run.name}-${step.label}.png`)
          await shootNodes(page, step.screenshot === true ? null : step.screenshot, result.screenshot)
        }
        entry.steps.push(result)
      }
    } catch (e) {
      entry.error = String(e && e.stack || e)
    }
    out.push(entry)
  }
  return out
}

async function setLocale(page, locale) {
  return await page.evaluate(async (locale) => {
    const app = window.app
    const store = app.extensionManager?.setting
    if (store?.set) await store.set('Comfy.Locale', locale)
    else await app.ui.settings.setSettingValueAsync('Comfy.Locale', locale)
    return store?.get ? store.get('Comfy.Locale') : app.ui.settings.getSettingValue('Comfy.Locale')
  }, locale)
}

// For each spec: switch the locale, put a node on the canvas, open its help (the selection toolbox's Info button);
// back to English at the end.
export async function locales(page, specs, docRequests, outdir) {
  const out = []
  for (const spec of specs) out.push(await locale(page, spec, docRequests, outdir))
  const reset = await setLocale(page, 'en').catch((e) => String(e))
  return { entries: out, reset }
}

async function locale(page, spec, docRequests, outdir) {
  const entry = { locale: spec.locale, type: spec.type }
  try {
    entry.setting = await setLocale(page, spec.locale)
    // The setting is saved on the server; the page is opened again in that language. (Without reloading,
    // frontends 1.48 and 1.58 register the refreshed node definitions before the new language's messages have
    // loaded, so a node created right after a switch may keep the previous language's title.)
    await page.reload({ waitUntil: 'load' })
    await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.LiteGraph)
    const t0 = Date.now()
    await page.waitForFunction(([type, title]) => window.LiteGraph.createNode(type)?.title === title,
      [spec.type, spec.expect_title], { timeout: 30000, polling: 250 }).catch(() => {})
    entry.title_seconds = (Date.now() - t0) / 1000
    await sleep(1000)
    await closeOverlays(page)
    entry.title = await placeNode(page, spec.type)
    await frames(page, 3)
    entry.widget_labels = await page.evaluate(() => window.app.graph.nodes[0].widgets.map((w) => w.label ?? w.name))
    const pt = await page.evaluate(() => {
      const app = window.app
      const node = app.graph.nodes[0]
      const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + 40, node.pos[1] - 15])
      const rect = app.canvas.canvas.getBoundingClientRect()
      return [rect.left + cx, rect.top + cy]
    })
    docRequests.length = 0
    await openInfoPanel(page, pt, spec.expect_heading)
    entry.body_has_heading = true
    entry.doc_requests = [...docRequests]
    entry.screenshot = join(outdir, `help-${spec.type}-${spec.locale}.png`)
    await page.screenshot({ path: entry.screenshot })
  } catch (e) {
    entry.error = String(e && e.stack || e)
    entry.doc_requests = [...docRequests]
    entry.body = await page.evaluate(() => document.body.innerText.slice(0, 3000)).catch(() => null)
  }
  return entry
}
