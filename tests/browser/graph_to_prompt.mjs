// The frontend as the oracle of the headless runner's conversion: opens each workflow file in ComfyUI's own
// page (Debian chromium, headless, playwright-core) and reports what app.graphToPrompt() makes of it, the
// API prompt the Queue button sends. With "variants", it also edits the loaded graph with the frontend's
// own API, as a user does on the canvas, saves it (app.graph.serialize(), what the frontend writes to a
// .json file), opens that saved file afresh and reports its graphToPrompt too:
//   reroute   - a Reroute node spliced into the first link, a native link reroute on another link
//   primitive - a PrimitiveNode feeding a seed/steps/size widget, holding a value different from the widget's
//   bypass    - one node with inputs and outputs bypassed (mode 4; a LoRA loader where there is one)
//   mute      - one node muted (mode 2)
//   subgraph  - every node with both inputs and outputs packed into one subgraph (convertToSubgraph)
//
//   node graph_to_prompt.mjs config.json        (prints one JSON object on stdout)
//
// config: {"url": ..., "chromium": ..., "workflows": [{"name", "path", "variants": bool}], "timeout_ms": ...}
// Output: {"frontend_version", "browser_version", "results": [{"name", "variant", "workflow", "prompt",
// "error"}]}; {"fatal": ...} as in load_workflows.mjs when the browser cannot be had.
import { readFileSync } from 'node:fs'

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

let chromium
try {
  ;({ chromium } = await import('playwright-core'))
} catch (e) {
  out({ fatal: 'no-playwright', message: String(e) })
  process.exit(0)
}
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
const timeout = config.timeout_ms ?? 60000
const VARIANTS = ['reroute', 'primitive', 'bypass', 'mute', 'subgraph']

let browser
try {
  browser = await chromium.launch({ executablePath: config.chromium, headless: true, args: FLAGS, timeout })
} catch (e) {
  out({ fatal: 'launch', message: String(e && e.message || e) })
  process.exit(0)
}
const result = { results: [], page_errors: [] }
try {
  result.browser_version = browser.version()
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 } })
  const origin = new URL(config.url).origin
  await context.route('**/*', (route) => {
    const u = route.request().url()
    return u.startsWith(origin) || u.startsWith('data:') || u.startsWith('blob:') ? route.continue() : route.abort()
  })
  const page = await context.newPage()
  page.setDefaultTimeout(timeout)
  page.on('pageerror', (e) => result.page_errors.push(String(e && e.message || e).slice(0, 500)))
  await page.goto(config.url, { waitUntil: 'load' })
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas && window.LiteGraph)
  await new Promise((r) => setTimeout(r, 1000))
  result.frontend_version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ??
    window.app?.ui?.settings?.getSettingValue?.('Comfy.FrontendVersion') ?? null)
  await page.evaluate(installHelpers)
  for (const wf of config.workflows) {
    const text = readFileSync(wf.path, 'utf8')
    result.results.push(await page.evaluate(([t, name]) => window.__oracle.asIs(JSON.parse(t), name), [text, wf.name]))
    for (const variant of wf.variants ? VARIANTS : []) {
      result.results.push(await page.evaluate(([t, name, v]) => window.__oracle.variant(JSON.parse(t), name, v),
        [text, wf.name, variant]))
    }
  }
} catch (e) {
  result.fatal = 'browser'
  result.message = String(e && e.stack || e)
} finally {
  await browser.close().catch(() => {})
}
out(result)

// Runs in the page.
function installHelpers() {
  const app = window.app
  const LG = window.LiteGraph
  const root = () => app.rootGraph ?? app.graph
  const clone = (x) => JSON.parse(JSON.stringify(x))
  const closeDialogs = () => document.querySelectorAll(
    '[role="dialog"] .p-dialog-close-button, .p-toast-message .p-toast-close-button').forEach((b) => b.click())
  async function load(data, name) {
    await app.loadGraphData(clone(data), true, true, name)
    closeDialogs()
  }
  async function prompt() {
    const { output } = await app.graphToPrompt()
    return clone(output)
  }
  const linkOf = (g, id) => (g.getLink ? g.getLink(id) : g.links[id])
  const allLinks = (g) => {
    const ls = g.links instanceof Map ? [...g.links.values()] : Object.values(g.links ?? {})
    return ls.filter(Boolean).sort((a, b) => a.id - b.id)
  }
  const isNote = (n) => ['Note', 'MarkdownNote'].includes(n.type)

  function addReroute(g) {
    const links = allLinks(g)
    if (!links.length) return 'no link'
    const l = links[0]
    const src = g.getNodeById(l.origin_id), dst = g.getNodeById(l.target_id)
    const r = LG.createNode('Reroute')
    g.add(r)
    r.pos = [(src.pos[0] + dst.pos[0]) / 2, (src.pos[1] + dst.pos[1]) / 2 - 60]
    src.connect(l.origin_slot, r, 0)
    r.connect(0, dst, l.target_slot)
    const other = allLinks(g).find((x) => x.origin_id !== r.id && x.target_id !== r.id)
    if (other && g.createReroute) {
      const a = g.getNodeById(other.origin_id), b = g.getNodeById(other.target_id)
      g.createReroute([(a.pos[0] + b.pos[0]) / 2, (a.pos[1] + b.pos[1]) / 2 + 30], other)
    }
    return null
  }

  function addPrimitive(g) {
    for (const wname of ['noise_seed', 'seed', 'steps', 'width']) {
      const target = g.nodes.find((n) => (n.inputs ?? []).some((i) => i.widget?.name === wname && i.link == null))
      if (!target) continue
      const slot = target.inputs.findIndex((i) => i.widget?.name === wname)
      const p = LG.createNode('PrimitiveNode')
      g.add(p)
      p.pos = [target.pos[0] - 320, target.pos[1] + 40]
      p.connect(0, target, slot)
      const w = p.widgets?.[0]
      if (!w) return 'primitive has no widget'
      if (wname.includes('seed')) w.value = Number(w.value) + 1234
      return null
    }
    return 'no seed/steps/width widget'
  }

  function setMode(g, mode) {
    const candidates = g.nodes.filter((n) => !isNote(n) && (n.inputs ?? []).some((i) => i.link != null) &&
      (n.outputs ?? []).some((o) => o.links?.length))
    const lora = candidates.find((n) => /Lora/i.test(n.type))
    const node = mode === 4 ? (lora ?? candidates[0]) : candidates[Math.floor(candidates.length / 2)]
    if (!node) return 'no node with inputs and outputs'
    node.mode = mode
    return null
  }

  function pack(g) {
    const items = g.nodes.filter((n) => !isNote(n) && (n.inputs ?? []).some((i) => i.link != null) &&
      (n.outputs ?? []).some((o) => o.links?.length))
    if (items.length < 2) return 'fewer than two nodes to pack'
    if (!g.convertToSubgraph) return 'this frontend has no subgraphs'
    g.convertToSubgraph(new Set(items))
    return null
  }

  window.__oracle = {
    async asIs(data, name) {
      try {
        await load(data, name)
        return { name, variant: 'as-is', prompt: await prompt() }
      } catch (e) {
        return { name, variant: 'as-is', error: String(e && e.stack || e) }
      }
    },
    async variant(data, name, variant) {
      try {
        await load(data, name)
        const g = root()
        const problem = { reroute: addReroute, primitive: addPrimitive, bypass: (x) => setMode(x, 4),
          mute: (x) => setMode(x, 2), subgraph: pack }[variant](g)
        if (problem) return { name, variant, skipped: problem }
        const saved = clone(g.serialize())
        await load(saved, `${name}-${variant}`) // the saved file, opened afresh
        return { name, variant, workflow: saved, prompt: await prompt() }
      } catch (e) {
        return { name, variant, error: String(e && e.stack || e) }
      }
    },
  }
}
