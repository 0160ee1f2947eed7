// The web app in a real browser (Debian's chromium through playwright-core): log in, the map's
// figures equal the API's for the same filters, editors' changes survive a reload, versions
// restore, viewers cannot save, exports are valid, German works, axe-core finds nothing
// serious, and a logged-out browser gets nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const BIN = process.env.ITINERA_BIN || new URL("../../target/debug/itinera", import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.ITINERA_SCREENSHOTS; // where to keep screenshots for docs/web.md
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
let server, browser, base, admin, readToken, writeKey, editToken;

before(async () => {
  const data = mkdtempSync(join(tmpdir(), "itinera-webapp-"));
  // no live trickle: the comparisons with the API are exact; the live test sends its own events
  server = spawn(BIN, ["demo", "--data", data, "--customers", "1500", "--live-rate", "0", "--listen", "127.0.0.1:0"], {
    env: { ...process.env, ITINERA_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const out = await new Promise((resolve, reject) => {
    let text = "";
    server.stdout.on("data", (chunk) => {
      text += chunk;
      // every line parsed below: the demo prints them one write each, so they can arrive in
      // separate chunks
      if (/edit token \([^)]*\): \S+\n/.test(text)) resolve(text);
    });
    server.on("exit", (code) => reject(new Error(`the demo exited (${code}) before serving`)));
  });
  base = /Itinera is running at (http:\/\/[^/\s]+)\//.exec(out)[1];
  const login = /log in as (\S+) with password (\S+)/.exec(out);
  admin = { email: login[1], password: login[2] };
  readToken = /read token \(query\): (\S+)/.exec(out)[1];
  writeKey = /write key \(ingest\): (\S+)/.exec(out)[1];
  editToken = /edit token \([^)]*\): (\S+)/.exec(out)[1];
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
});

async function logIn(user, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1000 }, acceptDownloads: true, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => assert.fail(`error in the page: ${e.message}`));
  await page.goto(`${base}/`);
  await page.fill("input[name=email]", user.email);
  await page.fill("input[name=password]", user.password);
  await page.press("input[name=password]", "Enter");
  await page.locator("[data-metric=entered]").first().waitFor();
  return page;
}

/** The query API as a program would call it, with the demo's read token. */
async function query(path, body, params = "") {
  const r = await fetch(`${base}/api/v1/${path}${params}`, {
    method: "POST",
    headers: { authorization: `Bearer ${readToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${path}: ${await r.clone().text()}`);
  return r.json();
}

/** Every stage figure of `metric` on screen (not a step's), by stage: its raw value. */
async function shown(page, metric, extra = "") {
  const cells = await page.locator(`[data-metric="${metric}"][data-stage]:not([data-step])${extra}`).all();
  const out = {};
  for (const c of cells) out[await c.getAttribute("data-stage")] = await c.getAttribute("data-value");
  return out;
}

async function sameAsApi(page, params) {
  const stages = await query("stages", { model: "customer-journey", top_touchpoints: 5 }, params);
  const nps = await query("scores", { kind: "nps", by: "stage", model: "customer-journey" }, params);
  // the figures of the latest refresh are on screen once they equal a fresh answer; the
  // comparison itself is exact
  const deadline = Date.now() + 15000;
  for (;;) {
    const entered = await shown(page, "entered");
    const ok = stages.stages.every((r) => entered[r.stage] === String(r.entered));
    if (ok || Date.now() > deadline) break;
    await page.waitForTimeout(200);
  }
  const entered = await shown(page, "entered");
  const conv = await shown(page, "next_stage_conversion");
  const median = await shown(page, "median_seconds_in_stage");
  const npsShown = await shown(page, "nps", '[data-score="nps"]');
  const nShown = await shown(page, "n", '[data-score="nps"]');
  assert.equal(Object.keys(entered).length, stages.stages.length, "a figure per stage");
  for (const [i, r] of stages.stages.entries()) {
    assert.equal(entered[r.stage], String(r.entered), `entered in ${r.stage}`);
    if (i < stages.stages.length - 1) {
      assert.equal(conv[r.stage], r.next_stage_conversion == null ? "" : String(r.next_stage_conversion), `conversion of ${r.stage}`);
    }
    assert.equal(median[r.stage], r.median_seconds_in_stage == null ? "" : String(r.median_seconds_in_stage), `median time in ${r.stage}`);
    // the stage's measured touchpoints and channels, in the API's order
    for (const what of ["touchpoints", "channels"]) {
      const cells = await page.locator(`[data-metric="${what}.persons"][data-stage="${r.stage}"]`).all();
      const onScreen = [];
      for (const c of cells) onScreen.push([await c.getAttribute("data-key"), await c.getAttribute("data-value")]);
      assert.deepEqual(onScreen, r[what].map((t) => [t.key, String(t.persons)]), `${what} of ${r.stage}`);
    }
    const g = nps.groups.find((x) => x.key === r.stage);
    assert.equal(nShown[r.stage], String(g ? g.n : 0), `NPS n in ${r.stage}`);
    if (g?.nps) assert.equal(npsShown[r.stage], String(g.nps.nps), `NPS in ${r.stage}`);
  }
  // the measured emotion curve of everyone in the filters, with its band, where n ≥ the map's 10
  for (const r of stages.stages) {
    const g = nps.groups.find((x) => x.key === r.stage);
    const cell = page.locator(`[data-metric="emotion"][data-persona=""][data-stage="${r.stage}"]`);
    const shown = g && g.n >= 10 ? [String(g.emotion), g.emotion_band.join(",")] : ["", null];
    assert.deepEqual([await cell.getAttribute("data-value"), await cell.getAttribute("data-band")], shown, `emotion in ${r.stage}`);
  }
  const customers = await page.locator('[data-metric="customers"]').getAttribute("data-value");
  assert.equal(customers, String(stages.customers), "the handoff's customers");
  // the step cells: the funnel over the map's steps and NPS by the step done last before answering
  const mapAnswer = await fetch(`${base}/api/v1/maps/default`, { headers: { authorization: `Bearer ${readToken}` } });
  assert.equal(mapAnswer.status, 200);
  const { map } = await mapAnswer.json();
  assert.ok(map.steps.length >= 3, "the demo map has steps");
  const funnel = await query("funnel", { steps: map.steps.map((s) => ({ match: s.selector, name: s.name })), window: "90d" }, params);
  const byStep = await query("scores", { kind: "nps", by: "step", steps: map.steps.map((s) => ({ match: s.selector, name: s.id })) }, params);
  assert.ok(byStep.groups.some((g) => g.key !== "(none)" && g.n > 0), "answers fall in steps");
  const at = async (metric, id, extra = "") => page.locator(`[data-metric="${metric}"][data-step="${id}"]${extra}`).getAttribute("data-value");
  for (const [i, s] of map.steps.entries()) {
    const r = funnel.steps[i];
    assert.equal(await at("count", s.id), String(r.count), `persons at step ${s.name}`);
    if (i > 0) {
      assert.equal(await at("conversion_from_previous", s.id), r.conversion_from_previous == null ? "" : String(r.conversion_from_previous), `conversion to ${s.name}`);
      assert.equal(await at("dropped", s.id), String(r.dropped), `drop-off before ${s.name}`);
      assert.equal(await at("median_seconds_from_previous", s.id), r.median_seconds_from_previous == null ? "" : String(r.median_seconds_from_previous), `time to ${s.name}`);
    }
    const g = byStep.groups.find((x) => x.key === s.id);
    const n = page.locator(`[data-metric="n"][data-score="nps"][data-step="${s.id}"]`);
    if (!g) {
      assert.equal(await n.count(), 0, `no answers after ${s.name}`);
      continue;
    }
    assert.equal(await n.getAttribute("data-value"), String(g.n), `NPS n after ${s.name}`);
    if (g.nps) assert.equal(await at("nps", s.id, '[data-score="nps"]'), String(g.nps.nps), `NPS after ${s.name}`);
    const emotion = page.locator(`[data-metric="emotion"][data-step="${s.id}"]`);
    if (g.n >= map.min_answers) assert.equal(await emotion.getAttribute("data-value"), String(g.emotion), `emotion after ${s.name}`);
    else assert.equal(await emotion.count(), 0, `emotion hidden below n ${map.min_answers} after ${s.name}`);
  }
  return stages;
}

test("a logged-out browser gets the login form and no data", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await page.locator("input[name=email]").waitFor();
  assert.equal(await page.locator("[data-metric]").count(), 0);
  for (const [method, path] of [["GET", "/api/v1/maps/default"], ["POST", "/api/v1/stages"], ["GET", "/api/v1/users"]]) {
    const status = await page.evaluate(async ([m, p]) => (await fetch(p, { method: m, headers: { "content-type": "application/json" }, body: m === "POST" ? "{}" : undefined })).status, [method, path]);
    assert.equal(status, 401, `${method} ${path}`);
  }
  await context.close();
});

test("the map shows the same numbers as the API, for every filter", async () => {
  const page = await logIn(admin);
  const all = await sameAsApi(page, "");
  assert.ok(all.stages[0].entered > 100, "the demo world has people in the first stage");
  if (SHOTS) {
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, "map.png"), fullPage: true });
  }
  await page.selectOption("select[name=persona]", "researcher");
  await page.waitForURL(/persona=researcher/);
  const one = await sameAsApi(page, "?persona=researcher");
  assert.ok(one.stages[0].entered < all.stages[0].entered, "the persona narrows the population");
  await page.selectOption("select[name=persona]", "");
  await page.selectOption("select[name=segment]", "repeat buyers");
  await sameAsApi(page, "?segment=repeat%20buyers");
  await page.selectOption("select[name=persona]", "loyal_regular");
  await page.waitForURL(/persona=loyal_regular/);
  await sameAsApi(page, "?segment=repeat%20buyers&persona=loyal_regular");
  await page.selectOption("select[name=persona]", "");
  // the B2B view: accounts reaching each stage, and the buying groups of those at each stage
  await page.selectOption("select[name=segment]", "");
  await page.waitForURL((u) => !u.search.includes("segment="));
  await page.check("input[name=b2b]");
  await page.waitForURL(/b2b=1/);
  const acc = await query("accounts", { model: "customer-journey", limit: 0 });
  const reach = await query("stages", { model: "customer-journey", accounts: {} });
  assert.ok(acc.by_stage.some((s) => s.accounts > 0), "the demo world has accounts");
  for (const [i, c] of acc.by_stage.entries()) {
    const at = (m) => page.locator(`[data-metric="${m}"][data-stage="${c.stage}"]`);
    await page.waitForFunction(
      ([sel, v]) => document.querySelector(sel)?.getAttribute("data-value") === v,
      [`[data-metric="by_stage.accounts"][data-stage="${c.stage}"]`, String(c.accounts)],
    );
    assert.equal(await at("by_stage.mean_coverage").getAttribute("data-value"), c.accounts ? String(c.mean_coverage) : "");
    assert.equal(await at("accounts.reached").getAttribute("data-value"), String(reach.accounts.reached[i]));
  }
  await page.uncheck("input[name=b2b]");
  // a date range: the API's [from, to) in UTC days
  await page.fill("input[name=from]", "2025-01-01");
  await page.fill("input[name=to]", "2025-06-30");
  await page.locator("input[name=to]").dispatchEvent("change");
  await page.waitForURL(/to=2025-06-30/);
  const from = Date.parse("2025-01-01T00:00:00Z");
  const to = Date.parse("2025-07-01T00:00:00Z");
  const stages = await query("stages", { model: "customer-journey", from_ms: from, to_ms: to });
  await page.waitForFunction(
    ([stage, v]) => document.querySelector(`[data-metric="entered"][data-stage="${stage}"]`)?.getAttribute("data-value") === v,
    [stages.stages[0].stage, String(stages.stages[0].entered)],
  );
  await page.context().close();
});

test("an editor's card survives a reload, a version restores, and a stale save is refused", async () => {
  const page = await logIn(admin);
  const version = Number(await page.locator("[data-version]").getAttribute("data-version"));
  const thoughts = page.locator('td[data-lane="thoughts"][data-stage="Awareness"]');
  await thoughts.getByRole("button", { name: /Add a card/ }).click();
  const card = thoughts.locator("textarea").last();
  await card.fill("Never heard of this brand before");
  await card.blur();
  await page.click('[data-action="save"]');
  await page.getByText(`Saved version ${version + 1}`).waitFor();
  await page.reload();
  await page.locator('td[data-lane="thoughts"][data-stage="Awareness"] textarea').first().waitFor();
  const texts = await page.locator('td[data-lane="thoughts"][data-stage="Awareness"] textarea').evaluateAll((els) => els.map((e) => e.value));
  assert.ok(texts.includes("Never heard of this brand before"), `after a reload: ${texts}`);
  // the two versions side by side: the card is the difference
  await page.getByRole("button", { name: "Versions" }).click();
  await page.click(`[data-compare="${version}"]`);
  const added = page.locator('.compare tr[data-change="Card added"]');
  await added.waitFor();
  assert.match(await added.textContent(), /Never heard of this brand before/);
  assert.equal(await page.locator(".compare tbody tr").count(), 1, "nothing else changed");
  // restore the version before the edit
  await page.click(`[data-restore="${version}"]`);
  await page.locator(`[data-version="${version + 2}"]`).waitFor();
  const after = await page.locator('td[data-lane="thoughts"][data-stage="Awareness"] textarea').evaluateAll((els) => els.map((e) => e.value));
  assert.ok(!after.includes("Never heard of this brand before"), "the restored version has no such card");
  // someone else saves meanwhile: this page's save is refused, not silently overwritten
  const csrf = await page.evaluate(async () => (await (await fetch("/api/v1/session")).json()).csrf);
  const current = await page.evaluate(async () => (await (await fetch("/api/v1/maps/default")).json()).map);
  const other = await page.evaluate(
    async ([csrf, map, base]) =>
      (await fetch("/api/v1/maps/default", { method: "PUT", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ map, base_version: base }) })).status,
    [csrf, current, version + 2],
  );
  assert.equal(other, 200);
  await thoughts.getByRole("button", { name: /Add a card/ }).click();
  await page.click('[data-action="save"]');
  await page.getByText("Someone saved this map meanwhile").waitFor();
  await page.context().close();
});

test("an editor binds a new step to touchpoints; its persons equal the API's funnel over the map's steps", async () => {
  const page = await logIn(admin);
  await page.click('[data-action="settings"]');
  await page.click('[data-action="add-step"]');
  const row = page.locator("[data-step-row]").last();
  await row.locator("select").selectOption("Retention");
  await row.locator("input").first().fill("Reviews the order");
  await row.locator("input").nth(1).fill("Review Submitted|Referral Sent");
  await row.locator("input").nth(1).blur();
  await page.click('[data-action="save"]');
  await page.getByText(/Saved version \d+/).waitFor();
  const map = await page.evaluate(async () => (await (await fetch("/api/v1/maps/default")).json()).map);
  const step = map.steps.find((s) => s.name === "Reviews the order");
  // the typed form is stored parsed: either touchpoint, not one event named with a "|"
  assert.deepEqual(step.selector, { any: [{ event: "Review Submitted" }, { event: "Referral Sent" }] });
  assert.equal(await row.locator("input").nth(1).inputValue(), "Review Submitted|Referral Sent", "shown as typed");
  const funnel = await query("funnel", { steps: map.steps.map((s) => ({ match: s.selector, name: s.name })), window: "90d" });
  const last = funnel.steps[funnel.steps.length - 1];
  assert.ok(last.count > 0, `the step matches persons in the demo world: ${JSON.stringify(funnel.steps.map((s) => s.count))}`);
  await page.waitForFunction(
    ([id, v]) => document.querySelector(`[data-metric="count"][data-step="${id}"]`)?.getAttribute("data-value") === v,
    [step.id, String(last.count)],
    { timeout: 20000 },
  );
  // a step in a stage the model does not have is refused, naming the field
  const bad = await page.evaluate(async (map) => {
    const csrf = (await (await fetch("/api/v1/session")).json()).csrf;
    map.steps.push({ id: "nope", stage: "Delight", name: "x", selector: "x" });
    const r = await fetch("/api/v1/maps/default", { method: "PUT", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ map }) });
    return [r.status, (await r.json()).errors?.[0]?.field];
  }, map);
  assert.deepEqual(bad, [400, `steps[${map.steps.length}].stage`]);
  // a step bound to a touchpoint nobody has says so, with the closest stored name
  await page.click('[data-action="add-step"]');
  const typo = page.locator("[data-step-row]").last();
  await typo.locator("select").selectOption("Consideration");
  await typo.locator("input").first().fill("Adds to basket");
  await typo.locator("input").nth(1).fill("Prodcut Added");
  await typo.locator("input").nth(1).blur();
  await page.click('[data-action="save"]');
  const warning = page.locator("[data-warning]", { hasText: "Prodcut Added" });
  await warning.waitFor({ timeout: 20000 });
  assert.match(await warning.textContent(), /did you mean 'Product Added'\?/);
  // lanes: renamed, moved, added; the map keeps them after a reload
  const thoughtsRow = page.locator('[data-lane-row="thoughts"]');
  await thoughtsRow.locator("input").fill("Gedanken & Zweifel");
  await thoughtsRow.locator("input").blur();
  await thoughtsRow.getByRole("button", { name: /Move up/ }).click();
  await page.selectOption("select[name=new-lane-kind]", "opportunities");
  await page.click('[data-action="add-lane"]');
  await page.click('[data-action="save"]');
  await page.getByText(/Saved version \d+/).waitFor();
  await page.reload();
  await page.locator("[data-metric=entered]").first().waitFor();
  const lanes = await page.locator("tbody tr.lane th[scope=row]").allTextContents();
  assert.ok(lanes.indexOf("Gedanken & Zweifel") >= 0 && lanes.indexOf("Gedanken & Zweifel") < lanes.indexOf("Customer actions"), `${lanes}`);
  assert.equal(lanes[lanes.length - 1], "New lane");
  await page.context().close();
});

test("a viewer reads the map and cannot change it, in the browser or through the API", async () => {
  const page = await logIn(admin);
  await page.click("text=Users and keys");
  await page.fill("input[name=new-email]", "viewer@demo.itinera");
  await page.fill("input[name=new-password]", "viewer-password-1");
  await page.selectOption("select[name=new-role]", "viewer");
  await page.click("form.inline button[type=submit]");
  await page.locator('[data-user="viewer@demo.itinera"]').waitFor();
  await page.context().close();
  const viewer = await logIn({ email: "viewer@demo.itinera", password: "viewer-password-1" });
  assert.equal(await viewer.locator('[data-action="save"]').count(), 0, "no save button");
  assert.equal(await viewer.locator("textarea").count(), 0, "cards are not editable");
  const status = await viewer.evaluate(async () => {
    const s = await (await fetch("/api/v1/session")).json();
    const map = (await (await fetch("/api/v1/maps/default")).json()).map;
    return (await fetch("/api/v1/maps/default", { method: "PUT", headers: { "content-type": "application/json", "x-csrf-token": s.csrf }, body: JSON.stringify({ map }) })).status;
  });
  assert.equal(status, 403);
  assert.equal(await viewer.locator("text=Users and keys").count(), 0, "no admin view");
  await viewer.context().close();
});

test("exports: JSON that imports as the same map, an SVG that parses, a PNG of the expected size, a PDF with its pages", async () => {
  const page = await logIn(admin);
  const [json] = await Promise.all([page.waitForEvent("download"), page.click("text=Export JSON")]);
  const doc = JSON.parse(readFileSync(await json.path(), "utf8"));
  assert.equal(doc.format, "itinera-map/1");
  const shown = await page.evaluate(async () => (await (await fetch("/api/v1/maps/default")).json()).map);
  assert.deepEqual(doc.map, shown);
  const [svg] = await Promise.all([page.waitForEvent("download"), page.click("text=Export SVG")]);
  const svgText = readFileSync(await svg.path(), "utf8");
  const parsed = await page.evaluate((text) => {
    const d = new DOMParser().parseFromString(text, "image/svg+xml");
    const err = d.querySelector("parsererror");
    return { error: err?.textContent ?? null, root: d.documentElement.nodeName, w: d.documentElement.getAttribute("width"), stages: d.querySelectorAll("th[data-stage]").length };
  }, svgText);
  assert.equal(parsed.error, null);
  assert.equal(parsed.root, "svg");
  assert.equal(parsed.stages, 5, "the five stages are in the picture");
  const [png] = await Promise.all([page.waitForEvent("download"), page.click("text=Export PNG")]);
  const bytes = readFileSync(await png.path());
  assert.equal(bytes.subarray(1, 4).toString(), "PNG");
  const size = await page.evaluate(async (data) => {
    const bmp = await createImageBitmap(new Blob([new Uint8Array(data)], { type: "image/png" }));
    return [bmp.width, bmp.height];
  }, [...bytes]);
  assert.equal(size[0], Number(parsed.w) * 2, "twice the map's width");
  const [pdf] = await Promise.all([page.waitForEvent("download"), page.click("text=Export PDF")]);
  const pdfText = readFileSync(await pdf.path()).toString("latin1");
  assert.ok(pdfText.startsWith("%PDF-"), "a PDF");
  const pages = (pdfText.match(/\/Type\s*\/Page(?![s\w])/g) ?? []).length;
  const declared = Number(/\/Type\s*\/Pages[\s\S]*?\/Count\s+(\d+)/.exec(pdfText)?.[1]);
  assert.ok(pages >= 1 && pages === declared, `its pages: ${pages} page objects, /Count ${declared}`);
  // A4 landscape, 10 mm margins and a 12 mm heading: the picture across 277 mm, cut every 178 mm
  assert.equal(pages, Math.ceil(((size[1] / size[0]) * 277) / 178), "as many pages as the picture's height needs");
  await page.context().close();
});

test("German: chosen from the browser, with German number formats; switchable", async () => {
  const page = await logIn(admin, { locale: "de-DE" });
  await page.getByRole("button", { name: "Abmelden" }).waitFor();
  const cell = page.locator('[data-metric="next_stage_conversion"]').first();
  const text = await cell.textContent();
  assert.match(text, /^\d{1,3},\d\s%$/, `a German percentage: ${text}`);
  await page.selectOption("select[name=locale]", "en");
  await page.getByRole("button", { name: "Log out" }).waitFor();
  assert.match(await cell.textContent(), /^\d{1,3}\.\d%$/);
  await page.context().close();
});

test("axe-core finds no serious or critical violation on the map, the admin view and the triggers", async () => {
  const page = await logIn(admin);
  await page.locator(".emotion svg").waitFor();
  for (const view of ["map", "admin", "triggers"]) {
    if (view === "admin") {
      await page.click("text=Users and keys");
      await page.locator("[data-user]").first().waitFor();
    }
    if (view === "triggers") {
      await page.click("nav >> text=Triggers");
      await page.locator("form.new-trigger").waitFor();
    }
    // evaluated through the DevTools protocol: the app's Content-Security-Policy rightly refuses
    // inline scripts
    await page.evaluate(AXE);
    const result = await page.evaluate(async () => await globalThis.axe.run(document, { resultTypes: ["violations"] }));
    const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    assert.deepEqual(
      serious.map((v) => `${v.id}: ${v.nodes.length} × ${v.nodes[0]?.target}`),
      [],
      `${view}: axe-core violations`,
    );
  }
  await page.context().close();
});

test("live: a touchpoint sent to the tracking API shows on the open map within the refresh", async () => {
  const page = await logIn(admin);
  const cell = page.locator('[data-metric="entered"][data-stage="Awareness"]');
  const before = Number(await cell.getAttribute("data-value"));
  const asOf = await page.locator("[data-as-of]").getAttribute("data-as-of");
  const sent = await fetch(`${base}/v1/page`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString("base64")}`, "content-type": "application/json" },
    body: JSON.stringify({ userId: "live-browser-test", name: "Home", properties: { path: "/" } }),
  });
  assert.equal(sent.status, 200);
  // the map refreshes every 10 s: within two refreshes the new person is counted
  await page.waitForFunction(
    ([sel, v]) => Number(document.querySelector(sel)?.getAttribute("data-value")) === v,
    ['[data-metric="entered"][data-stage="Awareness"]', before + 1],
    { timeout: 25000 },
  );
  assert.notEqual(await page.locator("[data-as-of]").getAttribute("data-as-of"), asOf, "the figures say when they are from");
  // a detractor's answer in Awareness fires the demo's alert, whose open case flags the stage
  const answer = await fetch(`${base}/v1/track`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString("base64")}`, "content-type": "application/json" },
    body: JSON.stringify({ userId: "live-browser-test", event: "Survey Responded", properties: { survey_id: "nps-relationship", survey_kind: "nps", score: 1 } }),
  });
  assert.equal(answer.status, 200);
  const fired = await (await fetch(`${base}/api/v1/alerts/evaluate`, { method: "POST", headers: { authorization: `Bearer ${editToken}` } })).json();
  assert.ok(JSON.stringify(fired).includes("live-browser-test"), `the alert fired: ${JSON.stringify(fired)}`);
  await page.locator('[data-flag="cases:Awareness"]').waitFor({ timeout: 25000 });
  await page.context().close();
});

test("triggers: an editor creates a rule, dry-runs it, switches it on, and it fires for a new customer", async () => {
  const page = await logIn(admin);
  await page.click("nav >> text=Triggers");
  const form = page.locator("form.new-trigger");
  await form.locator("input[name=name]").fill("welcome");
  await form.locator("select[name=stage]").selectOption("Decision");
  await form.locator("input[name=title]").fill("Onboarding call for {{person}}");
  await form.locator("input[name=holdout]").fill("0");
  await form.locator("button[type=submit]").click();
  const row = page.locator('[data-trigger="welcome"]');
  await row.locator('[data-state="off"]').waitFor();
  // who it would have reached over the last 30 days: the API's dry run, the same number
  await row.locator("text=Dry run").click();
  const shownPersons = Number(await page.locator("[data-dry-persons]").getAttribute("data-dry-persons"));
  const now = Date.now();
  const dry = await (await fetch(`${base}/api/v1/triggers/dry-run`, {
    method: "POST",
    headers: { authorization: `Bearer ${readToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "welcome", from_ms: now - 30 * 86400000, to_ms: now }),
  })).json();
  assert.ok(shownPersons > 0, `the demo has customers in the last 30 days: shown ${shownPersons}, API ${JSON.stringify(dry).slice(0, 300)}`);
  assert.ok(Math.abs(dry.persons - shownPersons) <= 2, `dry run: shown ${shownPersons}, API ${dry.persons}`);
  await row.locator("text=Switch on").click();
  await row.locator('[data-state="on"]').waitFor();
  // a new customer: the rule fires and its case is opened
  const sent = await fetch(`${base}/v1/track`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString("base64")}`, "content-type": "application/json" },
    body: JSON.stringify({ userId: "trigger-browser-test", event: "Order Completed", properties: { revenue: 20 } }),
  });
  assert.equal(sent.status, 200);
  const firing = page.locator('[data-firing="trigger-browser-test"]');
  for (let i = 0; i < 100 && !(await firing.count()); i++) {
    await row.locator("text=Firings").click();
    await page.waitForTimeout(100);
  }
  await firing.waitFor({ timeout: 1000 });
  for (let i = 0; i < 100 && !(await firing.textContent()).includes("case: delivered"); i++) {
    await row.locator("text=Firings").click();
    await page.waitForTimeout(100);
  }
  assert.match(await firing.textContent(), /case: delivered/);
  const cases = await (await fetch(`${base}/api/v1/cases`, { headers: { authorization: `Bearer ${readToken}` } })).json();
  assert.ok(cases.cases.some((c) => c.title === "Onboarding call for trigger-browser-test"), "the case was opened");
  await page.context().close();
});

test("a share link shows the map with the same live figures, read-only, until it is revoked", async () => {
  const page = await logIn(admin);
  await page.getByRole("button", { name: "Share" }).click();
  await page.click('[data-action="make-share"]');
  const url = await page.locator("[data-share-url]").inputValue();
  assert.match(url, /\/share\/sh_/);
  const link = new URL(url);
  const outsider = await browser.newContext({ viewport: { width: 1500, height: 1000 } });
  const shared = await outsider.newPage();
  shared.on("pageerror", (e) => assert.fail(`error in the shared page: ${e.message}`));
  await shared.goto(`${base}${link.pathname}`);
  await shared.locator("[data-metric=entered]").first().waitFor();
  await sameAsApi(shared, "");
  assert.equal(await shared.locator("textarea, [data-action=save]").count(), 0, "read-only");
  const secret = decodeURIComponent(link.pathname.slice("/share/".length));
  const statuses = await shared.evaluate(async (secret) => {
    const h = { "x-itinera-share": secret, "content-type": "application/json" };
    const map = (await (await fetch("/api/v1/maps/default", { headers: h })).json()).map;
    return Promise.all([
      fetch("/api/v1/maps/default", { method: "PUT", headers: h, body: JSON.stringify({ map }) }),
      fetch("/api/v1/maps/default/versions", { headers: h }),
      fetch("/api/v1/segments", { headers: h }),
      fetch("/api/v1/users", { headers: h }),
      fetch("/api/v1/paths", { method: "POST", headers: h, body: "{}" }),
    ].map((p) => p.then((r) => r.status)));
  }, secret);
  assert.deepEqual(statuses, [403, 403, 403, 403, 403], "nothing beyond the map");
  // revoked: the link shows nothing any more
  await page.locator("[data-share] button").first().click();
  await page.locator("[data-share] em").first().waitFor();
  await shared.reload();
  await shared.getByText("This share link has expired or was revoked.").waitFor();
  assert.equal(await shared.locator("[data-metric]").count(), 0);
  await outsider.close();
  await page.context().close();
});

test("the keyboard alone logs in, moves through the map and adds a card", async () => {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1000 } });
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await page.locator("input[name=email]").waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("name")), "email");
  await page.keyboard.type(admin.email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(admin.password);
  await page.keyboard.press("Enter");
  await page.locator("[data-metric=entered]").first().waitFor();
  // the first Tab reaches the skip link, which jumps to the content
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  // Tab reaches the first "+" of the Thoughts lane; Enter adds a card there, focusable in turn
  const plus = page.locator('td[data-lane="thoughts"][data-stage="Awareness"] button.add');
  let reached = false;
  for (let i = 0; i < 200 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await plus.evaluate((b) => b === document.activeElement);
  }
  assert.ok(reached, "the add button is reachable with Tab");
  const before = await page.locator('td[data-lane="thoughts"][data-stage="Awareness"] textarea').count();
  await page.keyboard.press("Enter");
  assert.equal(await page.locator('td[data-lane="thoughts"][data-stage="Awareness"] textarea').count(), before + 1);
  await context.close();
});

test("logging out ends the session on the server", async () => {
  const page = await logIn(admin);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.locator("input[name=email]").waitFor();
  const status = await page.evaluate(async () => (await fetch("/api/v1/maps/default")).status);
  assert.equal(status, 401);
  await page.context().close();
});
