// The frontend as the oracle of the headless runner's conversion: opens each workflow file in ComfyUI's own
// page (Debian chromium, headless, playwright-core) and reports what app.graphToPrompt() makes of it, the
// API prompt the Queue button sends. With "variants", it also edits the loaded graph with the frontend's
// own API, as a user does on the canvas, saves it (app.graph.serialize(), what the frontend writes to a
// .json file), opens that saved file afresh and reports its graphToPrompt too:
//   reroute         - a Reroute node spliced into the first link, a native link reroute on another link
//   primitive       - a PrimitiveNode feeding a seed/steps/size widget, holding a value different from the widget's
//   bypass          - one node with inputs and outputs bypassed (mode 4; a LoRA loader where there is one)
//   mute            - one node muted (mode 2)
//   subgraph        - every node with both inputs and outputs packed into one subgraph (convertToSubgraph)
//   subgraph-bypass - that subgraph instance bypassed (its outputs pass an input of their type through)
//   subgraph-mute   - that subgraph instance muted
//   promoted        - every node that feeds another packed into one subgraph, its seed, steps and width
//                     (where no node feeds them) and positive prompt widgets promoted to subgraph inputs, the
//                     instance holding other values (seed 123, steps/width + 64) than the inner widgets (seed 999)
//   instances       - promoted, plus a second instance of the same definition holding seed 456 (+ 128)
//   nested          - the sampler packed into a subgraph (seed promoted, instance value 555), that packed with
//                     the rest into an outer subgraph (the nested seed promoted again, outer value 123)
//   packed-mute     - every node (the SaveImage included) packed into one subgraph, its instance muted
//   packed-bypass   - the same, bypassed
//
//   node graph_to_prompt.mjs config.json        (writes one JSON object to config.out, or prints it)
//
// config: {"url": ..., "chromium": ..., "workflows": [{"name", "path", "variants": bool | [variant, ...]}],
//          "timeout_ms": ..., "out": "<file for the result>"}; one progress line per workflow on stderr.
// Output: {"frontend_version", "browser_version", "results": [{"name", "variant", "workflow", "prompt",
// "error" | "skipped"}]}; {"fatal": ...} as in load_workflows.mjs when the browser cannot be had.
import { launchChromium } from './common.mjs'
import { readFileSync, writeFileSync } from 'node:fs'

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const out = (obj) => (config.out ? writeFileSync(config.out, JSON.stringify(obj))
  : process.stdout.write(JSON.stringify(obj) + '\n'))

const timeout = config.timeout_ms ?? 60000
const VARIANTS = ['reroute', 'primitive', 'bypass', 'mute', 'subgraph', 'subgraph-bypass', 'subgraph-mute', 'promoted',
  'instances', 'nested', 'packed-mute', 'packed-bypass']

const browser = await launchChromium(config, out, timeout)
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
  for (const [i, wf] of config.workflows.entries()) {
    process.stderr.write(`[${i + 1}/${config.workflows.length}] ${wf.name}\n`)
    const text = readFileSync(wf.path, 'utf8')
    result.results.push(await page.evaluate(([t, name]) => window.__oracle.asIs(JSON.parse(t), name), [text, wf.name]))
    for (const variant of wf.variants === true ? VARIANTS : wf.variants || []) {
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
  const linked = (slots, key) => (slots ?? []).some((s) => (key === 'link' ? s.link != null : s.links?.length))
  const middle = (g) => g.nodes.filter((n) => !isNote(n) && linked(n.inputs, 'link') && linked(n.outputs, 'links'))
  const feeders = (g) => g.nodes.filter((n) => !isNote(n) && linked(n.outputs, 'links'))
  const SEEDS = ['noise_seed', 'seed']

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
    const candidates = middle(g)
    const lora = candidates.find((n) => /Lora/i.test(n.type))
    const node = mode === 4 ? (lora ?? candidates[0]) : candidates[Math.floor(candidates.length / 2)]
    if (!node) return 'no node with inputs and outputs'
    node.mode = mode
    return null
  }

  function convert(g, items) {
    if (!g.convertToSubgraph) return { problem: 'this frontend has no subgraphs' }
    if (items.length < 1) return { problem: 'nothing to pack' }
    const made = g.convertToSubgraph(new Set(items))
    const node = made?.node ?? g.nodes.find((n) => n.isSubgraphNode?.() && !items.includes(n))
    return node ? { node } : { problem: 'convertToSubgraph made no instance' }
  }

  function pack(g, mode) {
    const items = middle(g)
    if (items.length < 2) return 'fewer than two nodes to pack'
    const { node, problem } = convert(g, items)
    if (problem) return problem
    if (mode) node.mode = mode
    return null
  }

  function packAll(g, mode) {
    const { node, problem } = convert(g, g.nodes.filter((n) => !isNote(n)))
    if (problem) return problem
    node.mode = mode
    return null
  }

  // A widget of an inner node promoted the way the frontend promotes one (a subgraph input linked to the
  // widget's input slot); the subgraph input's name, or null where the widget cannot be promoted.
  function promote(instance, node, wname) {
    const sg = instance.subgraph
    const slot = (node.inputs ?? []).find((i) => i.widget?.name === wname)
    if (!slot) return null
    if (slot.link != null) {
      const l = linkOf(sg, slot.link)
      const io = sg.inputNode?.id ?? -10
      return l && String(l.origin_id) === String(io) ? sg.inputs[l.origin_slot]?.name ?? null : null
    }
    const taken = sg.inputs.map((i) => i.name)
    let name = wname
    for (let k = 1; taken.includes(name); k++) name = `${wname}_${k}`
    const input = sg.addInput(name, String(slot.type ?? '*'))
    if (slot.label) input.label = slot.label
    if (!input.connect(slot, node)) {
      sg.removeInput(input)
      return null
    }
    return name
  }

  function setInstanceValue(instance, name, value) {
    const w = (instance.widgets ?? []).find((x) => x.name === name)
    if (!w) return `the instance has no widget ${name}`
    w.value = value
    return null
  }

  const hasWidget = (n, name) => (n.widgets ?? []).some((w) => w.name === name)
  const widgetValue = (n, name) => (n.widgets ?? []).find((w) => w.name === name)?.value

  // Seed (123), steps (+1) and the positive prompt promoted on an instance packing every feeding node.
  function promoted(g) {
    for (const n of g.nodes) for (const s of SEEDS) if (hasWidget(n, s)) n.widgets.find((w) => w.name === s).value = 999
    const { node: inst, problem } = convert(g, feeders(g))
    if (problem) return { problem }
    const plan = [] // [subgraph input name, first instance's value, second instance's value]
    const free = (n, w) => (n.inputs ?? []).some((i) => i.widget?.name === w && i.link == null)
    for (const n of inst.subgraph.nodes) {
      for (const s of SEEDS) if (hasWidget(n, s)) plan.push([promote(inst, n, s), 123, 456])
      for (const w of ['steps', 'width']) { // where the workflow does not feed them from another node
        if (free(n, w)) plan.push([promote(inst, n, w), widgetValue(n, w) + 64, widgetValue(n, w) + 128])
      }
      if (n.type === 'CLIPTextEncode' && /positive/i.test(n.title ?? '')) {
        plan.push([promote(inst, n, 'text'), 'a promoted prompt', 'the second instance'])
      }
    }
    if (plan.length < 2 || plan.some(([name]) => !name)) return { problem: `promotion failed: ${JSON.stringify(plan)}` }
    for (const [name, value] of plan) {
      const p = setInstanceValue(inst, name, value)
      if (p) return { problem: p }
    }
    return { inst, plan }
  }

  // The saved file with a second instance of the definition of `instId`: its inputs linked to the same
  // outputs, its outputs unused, its promoted widgets holding `values` ({input name: value}).
  function addInstance(saved, instId, values) {
    const inst = saved.nodes.find((n) => String(n.id) === String(instId))
    const copy = clone(inst)
    const numbers = saved.nodes.map((n) => Number(n.id)).filter(Number.isFinite)
    const lastNode = Math.max(...numbers, saved.last_node_id ?? 0, saved.state?.lastNodeId ?? 0) + 1
    copy.id = typeof inst.id === 'string' ? String(lastNode) : lastNode
    copy.pos = [inst.pos[0], inst.pos[1] + (inst.size?.[1] ?? 200) + 120]
    for (const o of copy.outputs ?? []) o.links = []
    let lastLink = Math.max(saved.last_link_id ?? 0, saved.state?.lastLinkId ?? 0,
      ...(saved.links ?? []).map((l) => Number(Array.isArray(l) ? l[0] : l.id)))
    for (const [slot, input] of (copy.inputs ?? []).entries()) {
      if (input.link == null) continue
      const old = saved.links.find((l) => String(Array.isArray(l) ? l[0] : l.id) === String(input.link))
      const [, originId, originSlot, , , type] = Array.isArray(old) ? old
        : [old.id, old.origin_id, old.origin_slot, old.target_id, old.target_slot, old.type]
      input.link = ++lastLink
      saved.links.push(Array.isArray(old) ? [lastLink, originId, originSlot, copy.id, slot, type]
        : { ...old, id: lastLink, target_id: copy.id, target_slot: slot })
      const origin = saved.nodes.find((n) => String(n.id) === String(originId))
      origin.outputs[originSlot].links = [...(origin.outputs[originSlot].links ?? []), lastLink]
    }
    const widgetInputs = (copy.inputs ?? []).filter((i) => i.widget)
    copy.widgets_values = widgetInputs.map((i, k) => (i.name in values ? values[i.name] : inst.widgets_values?.[k]))
    saved.nodes.push(copy)
    if ('last_node_id' in saved) saved.last_node_id = lastNode
    if ('last_link_id' in saved) saved.last_link_id = lastLink
    if (saved.state) Object.assign(saved.state, { lastNodeId: lastNode, lastLinkId: lastLink })
    return saved
  }

  function instances(g) {
    const made = promoted(g)
    if (made.problem) return made.problem
    const values = Object.fromEntries(made.plan.map(([name, , second]) => [name, second]))
    return { saved: addInstance(clone(g.serialize()), made.inst.id, values) }
  }

  // The sampler packed alone (seed promoted, 555), then packed with the rest (seed promoted again, 123).
  function nested(g) {
    const sampler = g.nodes.find((n) => SEEDS.some((s) => hasWidget(n, s)) && linked(n.outputs, 'links'))
    if (!sampler) return 'no sampler with a seed'
    const seed = SEEDS.find((s) => hasWidget(sampler, s))
    sampler.widgets.find((w) => w.name === seed).value = 999
    const first = convert(g, [sampler])
    if (first.problem) return first.problem
    const inner = first.node
    const innerName = promote(inner, inner.subgraph.nodes.find((n) => hasWidget(n, seed)), seed)
    if (!innerName) return 'the nested seed could not be promoted'
    let p = setInstanceValue(inner, innerName, 555)
    if (p) return p
    const second = convert(g, feeders(g))
    if (second.problem) return second.problem
    const outer = second.node
    const nestedNode = outer.subgraph.nodes.find((n) => n.isSubgraphNode?.())
    const outerName = promote(outer, nestedNode, innerName)
    if (!outerName) return 'the outer seed could not be promoted'
    p = setInstanceValue(outer, outerName, 123)
    return p
  }

  const EDITS = {
    reroute: addReroute,
    primitive: addPrimitive,
    bypass: (g) => setMode(g, 4),
    mute: (g) => setMode(g, 2),
    subgraph: (g) => pack(g),
    'subgraph-bypass': (g) => pack(g, 4),
    'subgraph-mute': (g) => pack(g, 2),
    promoted: (g) => promoted(g).problem ?? null,
    instances,
    nested,
    'packed-mute': (g) => packAll(g, 2),
    'packed-bypass': (g) => packAll(g, 4),
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
        const edited = EDITS[variant](g)
        if (typeof edited === 'string') return { name, variant, skipped: edited }
        const saved = edited?.saved ?? clone(g.serialize())
        await load(saved, `${name}-${variant}`) // the saved file, opened afresh
        return { name, variant, workflow: saved, prompt: await prompt() }
      } catch (e) {
        return { name, variant, error: String(e && e.stack || e) }
      }
    },
  }
}
