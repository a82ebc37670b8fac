// The dashboard in Firefox (Debian firefox-esr), driven over WebDriver BiDi by puppeteer-core.
//
// Run by crates/switchboard/tests/it/ui_browser.rs against a real Switchboard whose receiver
// refuses its first request and accepts the rest:
//   node firefox.test.mjs
// with SWITCHBOARD_URL, SWITCHBOARD_TOKEN, SCREENSHOTS and FIREFOX set.
//
// Same journey as the Chromium test, in Firefox: sign in, see an event arrive live, open its
// payload (tabs, escaping), replay the failed delivery and see it succeed live, dry-run a route.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

const base = must("SWITCHBOARD_URL");
const token = must("SWITCHBOARD_TOKEN");
const shots = must("SCREENSHOTS");
const executablePath = process.env.FIREFOX || "/usr/bin/firefox-esr";
// Generous: Firefox starts slowly on a loaded two-core CI machine.
const TIMEOUT = 90_000;

function must(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

function step(text) {
  console.log(`• ${text}`);
}

async function clickAndWait(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

async function textOf(page, selector) {
  return page.$eval(selector, (node) => node.textContent);
}

mkdirSync(shots, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "switchboard-firefox-"));
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath,
  headless: true,
  userDataDir: profile,
  protocol: "webDriverBiDi",
  timeout: TIMEOUT,
  protocolTimeout: TIMEOUT * 2,
});
const errors = [];
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.setViewport({ width: 1366, height: 800 });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("dialog", async (d) => {
    if (d.type() !== "confirm") errors.push(`unexpected ${d.type()} dialog: ${d.message()}`);
    await d.accept();
  });

  step("sign in");
  await page.goto(`${base}/ui/events`);
  await page.waitForSelector("#token");
  await page.type("#token", token);
  await clickAndWait(page, "form.signin button[type=submit]");
  if (!page.url().endsWith("/ui/events")) throw new Error(`after sign-in at ${page.url()}`);
  await page.waitForSelector('body[data-live="open"]');

  step("an event arrives and shows up live");
  const ingest = await fetch(`${base}/in/src`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-order-source": "firefox-test" },
    body: JSON.stringify({ order: { id: 7 }, note: "<script>alert('not run')</script>" }),
  });
  if (ingest.status !== 202) throw new Error(`ingest answered ${ingest.status}`);
  const { id: eventId } = await ingest.json();
  await page.waitForFunction(
    (id) => [...document.querySelectorAll('tbody[data-live="events"] a')].some((a) => a.textContent === id),
    {},
    eventId,
  );
  await page.screenshot({ path: join(shots, "firefox-events.png") });

  step("open its payload: pretty, headers and raw tabs; the <script> is text");
  await page.goto(`${base}/ui/events/${eventId}`);
  const pretty = await textOf(page, '[data-testid="payload-pretty"]');
  if (!pretty.includes("<script>alert('not run')</script>")) throw new Error(`pretty: ${pretty}`);
  if ((await page.$$("main script")).length !== 0) throw new Error("payload markup became elements");
  await page.click("#tab-headers");
  await page.waitForSelector("#view-headers:not([hidden])");
  if (!(await textOf(page, "#view-headers")).includes("firefox-test")) throw new Error("headers tab");
  await page.click("#tab-raw");
  await page.waitForSelector("#view-raw:not([hidden])");

  step("replay its failed delivery and see it succeed");
  const deliveryHref = await page.$eval('table[aria-label="Deliveries of this event"] a', (a) => a.getAttribute("href"));
  await page.goto(`${base}${deliveryHref}`);
  await page.waitForSelector('body[data-live="open"]');
  await page.waitForFunction(() => document.querySelector("dd[data-delivery-status]").textContent.trim() === "failed");
  await clickAndWait(page, "form.inline button[type=submit]");
  await page.waitForSelector('body[data-live="open"]');
  await page.waitForFunction(() => document.querySelector("dd[data-delivery-status]").textContent.trim() === "succeeded");
  await page.screenshot({ path: join(shots, "firefox-delivery-replayed.png") });

  step("dry-run the route");
  await page.goto(`${base}/ui/routes/src-dst`);
  await page.select('select[name="event_id"]', eventId);
  await clickAndWait(page, 'form[action$="/dry-run"] button[type=submit]');
  const body = JSON.parse(await textOf(page, '[data-testid="dry-run-body"]'));
  if (body.order?.id !== 7) throw new Error(`dry-run body: ${JSON.stringify(body)}`);

  if (errors.length) throw new Error(errors.join("\n"));
  console.log("dashboard firefox test passed");
} catch (error) {
  console.error(`dashboard firefox test FAILED: ${error.stack || error}`);
  if (errors.length) console.error(errors.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
