// What every browser script here shares: the one JSON line it reports, chromium launched through playwright-core
// (Debian's chromium, headless: no browser download), and two canvas helpers. A script that cannot have the
// browser reports {"fatal": "no-playwright" | "launch", "message"} and exits 0: the test then skips, saying why.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// The report on stdout, one JSON line (the tests read the last line starting with '{').
export const printLine = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

// The flags known to work on these machines; playwright adds --headless and a fresh --user-data-dir.
export const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']

// chromium at config.chromium, or the fatal report through `out` and exit 0.
export async function launchChromium (config, out = printLine, timeout = undefined) {
  let chromium
  try {
    ;({ chromium } = await import('playwright-core'))
  } catch (e) {
    out({ fatal: 'no-playwright', message: String(e) })
    process.exit(0)
  }
  try {
    return await chromium.launch({ executablePath: config.chromium, headless: true, args: FLAGS,
      ...(timeout ? { timeout } : {}) })
  } catch (e) {
    out({ fatal: 'launch', message: String(e && e.message || e) })
    process.exit(0)
  }
}

// Close the dialogs and toasts the page opened (at most five rounds).
export async function closeOverlays (page, pause = 200) {
  for (let i = 0; i < 5; i++) {
    const n = await page.evaluate(() => {
      const buttons = [...document.querySelectorAll(
        '[role="dialog"] .p-dialog-close-button, .p-toast-message .p-toast-close-button')]
      buttons.forEach((b) => b.click())
      return buttons.length
    })
    if (!n) break
    await sleep(pause)
  }
}

// An empty graph holding one new node of `type` at (260, 220), the canvas at scale 1: returns its title.
export async function placeNode (page, type) {
  return page.evaluate((type) => {
    const app = window.app
    app.graph.clear()
    const node = window.LiteGraph.createNode(type)
    node.pos = [260, 220]
    app.graph.add(node)
    app.canvas.ds.offset = [0, 0]
    app.canvas.ds.scale = 1
    app.canvas.setDirty(true, true)
    return node.title
  }, type)
}

// Wait for n animation frames of the page (the canvas has drawn what was just changed).
export async function frames (page, n) {
  for (let i = 0; i < n; i++) await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())))
}

// Click the canvas at client point pt (a node's title bar), then the selection toolbox's Info button, and wait
// until the page shows `text` (the node's help page heading).
export async function openInfoPanel (page, pt, text) {
  await page.mouse.click(pt[0], pt[1])
  await frames(page, 3)
  const info = page.locator('[data-testid="info-button"]').first()
  await info.waitFor({ state: 'visible', timeout: 15000 })
  await info.click()
  await page.waitForFunction((t) => document.body.innerText.includes(t), text, { timeout: 20000 })
  await sleep(300)
}
