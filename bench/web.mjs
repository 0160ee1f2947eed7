// Browser budgets of the web app (docs/benchmarks.md): the JavaScript a first visit loads
// (gzip), and how long after navigation the journey map is interactive, in Debian's chromium.
// "Interactive" = every stage's figures are on screen (the metrics cells are filled from
// /api/v1/stages and /api/v1/scores) and the emotion curve is drawn.
//
// Usage: node bench/web.mjs BASE_URL EMAIL PASSWORD [RUNS]
//   e.g. after `itinera demo` prints its login. Needs tests/browser's npm packages (npm ci there).
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";

const require = createRequire(new URL("../tests/browser/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const [base, email, password, runsArg] = process.argv.slice(2);
if (!password) {
  console.error("usage: node bench/web.mjs BASE_URL EMAIL PASSWORD [RUNS]");
  process.exit(2);
}
const runs = Number(runsArg ?? 7);

// what the first visit loads: index.html's scripts and styles, and the modules they import
const html = await (await fetch(`${base}/`)).text();
const initial = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
let initialJs = 0;
let initialCss = 0;
const seen = new Set();
const queue = [...initial];
while (queue.length) {
  const path = queue.shift();
  if (seen.has(path)) continue;
  seen.add(path);
  const body = Buffer.from(await (await fetch(`${base}${path}`)).arrayBuffer());
  const gz = gzipSync(body, { level: 9 }).length;
  if (path.endsWith(".js")) {
    initialJs += gz;
    // static imports are loaded before the app runs; dynamic import() chunks are not
    for (const m of body.toString().matchAll(/(?:^|[;}\s])import\s*(?:[^()"']*?from\s*)?["'](\.\/[^"']+\.js)["']/g)) {
      queue.push(new URL(m[1], `${base}${path}`).pathname);
    }
  } else initialCss += gz;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
});
const context = await browser.newContext({ viewport: { width: 1500, height: 1000 } });
const page = await context.newPage();
const login = await page.request.post(`${base}/api/v1/session`, { data: { email, password } });
if (!login.ok()) throw new Error(`login: ${login.status()} ${await login.text()}`);
const times = [];
for (let i = 0; i < runs; i++) {
  const t0 = Date.now();
  await page.goto(`${base}/`, { waitUntil: "commit" });
  await page.waitForFunction(() => {
    const stages = document.querySelectorAll("thead th[data-stage]").length;
    return stages > 0 && document.querySelectorAll('[data-metric="entered"]').length === stages && document.querySelector(".emotion svg");
  }, null, { timeout: 120000, polling: 10 });
  times.push(Date.now() - t0);
}
await browser.close();
times.sort((a, b) => a - b);
const kb = (n) => (n / 1024).toFixed(1);
console.log(JSON.stringify({
  initial_js_gzip_kb: Number(kb(initialJs)),
  initial_css_gzip_kb: Number(kb(initialCss)),
  interactive_ms: { median: times[Math.floor(times.length / 2)], min: times[0], max: times[times.length - 1], runs },
}, null, 2));
