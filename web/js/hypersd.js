// Hyper-SD: what the pack's nodes did, shown on the node (ComfyUI frontend 1.27 to 1.58).
//
// - Hyper-SD LoRA Loader: after a run, the file and where it came from, the strength applied (the recipe's or
//   custom), the layers the model patcher took out of the file's, and the recipe it outputs (its `ui` output,
//   key hypersd_lora). While strength_from is 'recipe', the strength widget holds the chosen file's recipe
//   strength, the value that is applied (the node sends it with each file's recipe in the 'lora' input's
//   options, hypersd_recipes); editing it switches strength_from to 'custom', so the canvas never shows a
//   strength that is not applied.
// - Hyper-SD Scheduler: after a run, the timesteps and sigmas it produced, the shift (SD3, FLUX), and a small
//   plot of the sigmas (`ui` key hypersd_schedule).
// The text is a read-only DOM widget appended after the node's own widgets, never saved in the workflow
// (serialize false), so saved workflows keep their widget order and values.
import { app } from '../../../scripts/app.js'

const LOADER = 'HyperSDLoraLoader'
const SCHEDULER = 'HyperSDScheduler'
const SHOWN = { [LOADER]: 'hypersd_lora', [SCHEDULER]: 'hypersd_schedule' }
const PANEL = 'hypersd_panel'
const RECIPE = 'recipe'
const CUSTOM = 'custom'
const LINE_PX = 14
const PLOT_PX = 44
const PANEL_WIDTH = 280 // a node showing its panel is widened to this (graph units) when narrower
const DOM_MARGIN = 10 // the frontend's margin around a DOM widget's element, inside the widget's height

const findWidget = (node, name) => node.widgets?.find((w) => w.name === name)

// -- the recipe's strength in the strength widget ------------------------------------------------------------

function recipeStrength(node, recipes) {
  const from = findWidget(node, 'strength_from')
  const lora = findWidget(node, 'lora')
  if (!from || from.value !== RECIPE || !lora) return undefined
  return recipes[lora.value]?.strength
}

// 'lora' fed by a link: the file is known only when the prompt runs
const loraLinked = (node) => node.inputs?.some((i) => (i.name === 'lora' || i.widget?.name === 'lora') && i.link != null)

function showRecipeStrength(node, recipes) {
  const strength = findWidget(node, 'strength')
  if (!strength) return
  // with the recipe's strength and a linked file, no value on the canvas is the applied one: the widget is shown
  // inactive (the frontend draws a disabled number without its value)
  const inactive = findWidget(node, 'strength_from')?.value === RECIPE && loraLinked(node)
  if (!!strength.disabled !== inactive) strength.disabled = inactive
  const value = inactive ? undefined : recipeStrength(node, recipes)
  if (value !== undefined && strength.value !== value) strength.value = value
  node.setDirtyCanvas?.(true, true)
}

function chain(widget, after) {
  if (!widget) return
  const original = widget.callback
  widget.callback = function (...args) {
    const result = original?.apply(this, args)
    after(...args)
    return result
  }
}

function watchStrength(node, recipes) {
  const update = () => showRecipeStrength(node, recipes)
  chain(findWidget(node, 'lora'), update)
  chain(findWidget(node, 'strength_from'), update)
  // a strength typed in while the recipe's is shown is a custom strength
  chain(findWidget(node, 'strength'), (value) => {
    const recipe = recipeStrength(node, recipes)
    const from = findWidget(node, 'strength_from')
    if (recipe !== undefined && from && Number(value) !== recipe) {
      from.value = CUSTOM
      node.setDirtyCanvas?.(true, true)
    }
  })
  update()
}

// -- the run's summary on the node ---------------------------------------------------------------------------

function plotSvg(sigmas, width) {
  const top = Math.max(...sigmas)
  if (!(sigmas.length > 1 && top > 0)) return null
  const ns = 'http://www.w3.org/2000/svg'
  const svg = document.createElementNS(ns, 'svg')
  const w = Math.max(60, width), h = PLOT_PX - 6, pad = 3
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`)
  svg.setAttribute('width', '100%')
  svg.setAttribute('height', String(h))
  svg.dataset.points = String(sigmas.length)
  const xy = sigmas.map((s, i) => [pad + (i * (w - 2 * pad)) / (sigmas.length - 1), pad + (1 - s / top) * (h - 2 * pad)])
  const line = document.createElementNS(ns, 'polyline')
  line.setAttribute('points', xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '))
  line.setAttribute('fill', 'none')
  line.setAttribute('stroke', 'currentColor')
  line.setAttribute('stroke-width', '1.5')
  svg.appendChild(line)
  for (const [x, y] of xy) {
    const dot = document.createElementNS(ns, 'circle')
    dot.setAttribute('cx', x.toFixed(1))
    dot.setAttribute('cy', y.toFixed(1))
    dot.setAttribute('r', '2')
    dot.setAttribute('fill', 'currentColor')
    svg.appendChild(dot)
  }
  return svg
}

// The panel's height at scale 1 for a node of `width`: a hidden copy laid out by the browser itself.
function measuredHeight(el, width) {
  const probe = el.cloneNode(true)
  Object.assign(probe.style, { position: 'absolute', visibility: 'hidden', left: '-10000px', top: '0',
    width: `${Math.max(40, width - 2 * DOM_MARGIN)}px`, height: 'auto', transform: 'none' })
  document.body.appendChild(probe)
  const height = probe.scrollHeight
  probe.remove()
  return height
}

function panel(node) {
  let widget = findWidget(node, PANEL)
  if (widget) return widget
  const el = document.createElement('div')
  el.className = 'hypersd-panel'
  Object.assign(el.style, {
    font: `11px/${LINE_PX}px monospace`, whiteSpace: 'pre-wrap', overflowWrap: 'anywhere', overflow: 'hidden',
    color: 'var(--input-text, #ddd)', background: 'var(--comfy-input-bg, #222)', padding: '4px 6px',
    borderRadius: '4px', boxSizing: 'border-box', userSelect: 'text',
  })
  const height = () => Number(el.dataset.height || 0)
  widget = node.addDOMWidget(PANEL, 'hypersd-panel', el, {
    serialize: false, hideOnZoom: false,
    getValue: () => el.dataset.text ?? '', setValue: () => {},
    getMinHeight: height, getMaxHeight: height, getHeight: height,
  })
  widget.serialize = false
  widget.options.serialize = false
  return widget
}

function show(node, entry) {
  if (!entry || typeof entry.text !== 'string') return
  const widget = panel(node)
  const el = widget.element ?? widget.inputEl
  const width = Math.max(node.size?.[0] ?? 0, PANEL_WIDTH)
  el.textContent = entry.text
  el.dataset.text = entry.text
  const plot = Array.isArray(entry.sigmas) ? plotSvg(entry.sigmas, width - 32) : null
  if (plot) el.appendChild(plot)
  el.dataset.height = String(measuredHeight(el, width) + 2 * DOM_MARGIN + 4)
  const size = node.computeSize?.()
  if (size) node.setSize([Math.max(width, size[0]), Math.max(node.size[1], size[1])])
  node.setDirtyCanvas?.(true, true)
}

function showOutput(node, output) {
  const key = SHOWN[node?.comfyClass ?? node?.type]
  const entries = output?.[key]
  if (Array.isArray(entries) && entries.length) show(node, entries[entries.length - 1])
}

app.registerExtension({
  name: 'HyperSD.NodeDisplay',
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!(nodeData.name in SHOWN)) return
    const onExecuted = nodeType.prototype.onExecuted
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments)
      showOutput(this, output)
    }
    if (nodeData.name !== LOADER) return
    const recipes = nodeData.input?.required?.lora?.[1]?.hypersd_recipes ?? {}
    const onNodeCreated = nodeType.prototype.onNodeCreated
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments)
      watchStrength(this, recipes)
      return result
    }
    const onConnectionsChange = nodeType.prototype.onConnectionsChange
    nodeType.prototype.onConnectionsChange = function () {
      const result = onConnectionsChange?.apply(this, arguments)
      showRecipeStrength(this, recipes)
      return result
    }
    const onConfigure = nodeType.prototype.onConfigure
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments)
      showRecipeStrength(this, recipes)
      return result
    }
  },
  // newer frontends restore a workflow's last outputs when its tab is opened again
  onNodeOutputsUpdated(outputs) {
    for (const [id, output] of Object.entries(outputs ?? {})) {
      if (id.includes(':')) continue // a node inside a subgraph: shown by onExecuted when it runs
      showOutput(app.graph?.getNodeById?.(id), output)
    }
  },
})
