// The survey widget in a real browser (Debian's chromium, driven by playwright-core): a page on
// another origin embeds one script tag; the widget appears as a labelled dialog, is used with the
// keyboard only, and its answer reaches the store as a `Survey Responded` event.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.ITINERA_BIN || new URL("../../target/debug/itinera", import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let server, page, browser, api, keys, site;

async function until(f, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch {}
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  const data = mkdtempSync(join(tmpdir(), "itinera-browser-"));
  keys = JSON.parse(execFileSync(BIN, ["keys", "create", "--data", data, "--format", "json"]).toString());
  // defining a survey needs a token of the edit scope (docs/security.md)
  const edit = JSON.parse(
    execFileSync(BIN, ["keys", "create", "--data", data, "--scope", "edit", "--format", "json"]).toString(),
  );
  // port 0: the server announces the address it listens on in its first line
  server = spawn(BIN, ["serve", "--data", data, "--listen", "127.0.0.1:0"], {
    env: { ...process.env, ITINERA_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  api = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (chunk) => {
      out += chunk;
      const m = /Itinera is running at (http:\/\/[^/\s]+)\//.exec(out);
      if (m) resolve(m[1]);
    });
    server.on("exit", (code) => reject(new Error(`the server exited (${code}) before listening`)));
  });
  const put = await fetch(`${api}/api/v1/surveys/nps-web`, {
    method: "PUT",
    headers: { authorization: `Bearer ${edit.token}`, "content-type": "application/json" },
    body: JSON.stringify({
      kind: "nps",
      question: { en: "How likely are you to recommend us?", de: "Wie wahrscheinlich empfehlen Sie uns weiter?" },
      follow_up: { en: "What is the main reason?", de: "Was ist der wichtigste Grund?" },
      trigger: { after: "Order Completed", throttle: "90d" },
    }),
  });
  assert.equal(put.status, 200);
  // the customer's site: another origin, one script tag
  site = createServer((req, res) => {
    res.setHeader("content-type", "text/html; charset=utf-8");
    res.end(`<!doctype html><html lang="de"><body><h1>Shop</h1>
      <script src="${api}/widget.js" data-write-key="${keys.write_key}" data-survey="nps-web"
              data-user-id="browser-user" data-delay-ms="1" async></script></body></html>`);
  });
  await new Promise((r) => site.listen(0, "127.0.0.1", r));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  page = await browser.newPage();
});

after(async () => {
  await browser?.close();
  site?.close();
  server?.kill("SIGTERM");
});

test("the widget asks in the page's language, works with the keyboard and stores the answer", async () => {
  await page.goto(`http://127.0.0.1:${site.address().port}/`);
  const dialog = page.getByRole("dialog", { name: "Wie wahrscheinlich empfehlen Sie uns weiter?" });
  await dialog.waitFor();
  assert.equal(await page.locator("script[data-survey]").getAttribute("data-itinera-state"), "shown");
  // keyboard only: the first radio has focus; arrows move the choice, Tab reaches the comment and Send
  const focused = await page.evaluate(() => document.activeElement?.getAttribute("value"));
  assert.equal(focused, "0");
  for (let i = 0; i < 9; i++) await page.keyboard.press("ArrowRight");
  await page.keyboard.press("Tab");
  await page.keyboard.type("Schnelle Lieferung");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await page.getByRole("status").waitFor();
  const scores = await until(async () => {
    const r = await fetch(`${api}/api/v1/scores`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.read_token}`, "content-type": "application/json" },
      body: JSON.stringify({ kind: "nps", by: "survey" }),
    });
    const j = await r.json();
    return j.overall.n === 1 ? j : null;
  }, "the answer in the scores");
  assert.equal(scores.groups[0].key, "nps-web");
  assert.equal(scores.overall.mean, 9);
  const comments = await (await fetch(`${api}/api/v1/comments`, {
    method: "POST",
    headers: { authorization: `Bearer ${keys.read_token}`, "content-type": "application/json" },
    body: JSON.stringify({ scores: { kind: "nps" } }),
  })).json();
  assert.equal(comments.comments[0].comment, "Schnelle Lieferung");
  assert.equal(comments.comments[0].person, "browser-user");
});

test("the throttle keeps the widget away on the next visit", async () => {
  await page.reload();
  // the widget's own decision, not a pause: a widget that never loads fails here
  const script = page.locator("script[data-survey]");
  await until(async () => await script.getAttribute("data-itinera-state"), "the widget's decision");
  assert.equal(await script.getAttribute("data-itinera-state"), "throttled");
  assert.equal(await page.getByRole("dialog").count(), 0);
});
