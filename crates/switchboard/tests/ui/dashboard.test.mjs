// End-to-end test of the /ui dashboard in headless Chromium, driven by playwright-core.
//
// Run by crates/switchboard/tests/it/ui_browser.rs, which starts a real Switchboard and a
// receiver that fails its first request and accepts the rest, then runs:
//   node dashboard.test.mjs
// with SWITCHBOARD_URL, SWITCHBOARD_TOKEN, SCREENSHOTS (a directory) and CHROMIUM set.
//
// Scenarios: sign in; see an event arrive live; open its payload; replay its failed delivery and
// see it succeed; create a route with a jq transform and dry-run it; create, edit, pause (through
// its confirmation dialog) and resume a source. Every page is saved as a screenshot. Exits non-zero (with the reason) on the first failure.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = must("SWITCHBOARD_URL");
const token = must("SWITCHBOARD_TOKEN");
const shots = must("SCREENSHOTS");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
// Generous: the suite runs many servers at once on a two-core CI machine.
const TIMEOUT = 60_000;

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

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

mkdirSync(shots, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "switchboard-chromium-"));
// A fresh profile (--user-data-dir) per run: playwright passes it through launchPersistentContext.
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1366, height: 800 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const errors = [];
try {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console error: ${m.text()}`);
  });
  // Any dialog means a script ran that should not have (payloads are shown, never run),
  // except the dashboard's own confirmations, which we accept.
  page.on("dialog", async (d) => {
    if (d.type() !== "confirm") errors.push(`unexpected ${d.type()} dialog: ${d.message()}`);
    await d.accept();
  });

  step("pages need a session: /ui/events goes to the sign-in page");
  await page.goto(`${base}/ui/events`);
  await page.waitForURL(/\/ui\/sign-in/);
  await shot(page, "sign-in");

  step("sign in with the API token");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/ui\/events$/);
  await page.waitForSelector('body[data-live="open"]');

  step("an event arrives and shows up live, without a reload");
  const payload = {
    order: { id: 42, total: 9.5 },
    note: "<script>alert('not run')</script><img src=x onerror=alert(2)>",
  };
  const ingest = await fetch(`${base}/in/src`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-order-source": "browser-test" },
    body: JSON.stringify(payload),
  });
  if (ingest.status !== 202) throw new Error(`ingest answered ${ingest.status}`);
  const { id: eventId } = await ingest.json();
  const liveRow = page.locator('tbody[data-live="events"] tr', { hasText: eventId });
  await liveRow.waitFor();
  await shot(page, "events");

  step("open the event's payload: pretty JSON, headers, raw");
  await liveRow.getByRole("link", { name: eventId }).click();
  await page.waitForURL(new RegExp(`/ui/events/${eventId}$`));
  const pretty = page.getByTestId("payload-pretty");
  await pretty.waitFor();
  const prettyText = await pretty.innerText();
  if (!prettyText.includes('"id": 42')) throw new Error(`pretty payload lacks the order id: ${prettyText}`);
  if (!prettyText.includes("<script>alert('not run')</script>")) {
    throw new Error("the <script> in the payload should be shown as text");
  }
  if ((await page.locator("main script, main img").count()) !== 0) {
    throw new Error("payload markup became elements");
  }
  await shot(page, "event-payload");
  await page.getByRole("tab", { name: "Headers" }).click();
  await page.getByRole("table", { name: "Headers" }).getByText("browser-test").waitFor();
  await page.getByRole("tab", { name: "Raw" }).click();
  await page.getByTestId("payload-raw").getByText('"total":9.5').waitFor();

  step("its delivery failed (the receiver refused it): open it and replay it");
  const deliveryLink = page.getByRole("table", { name: "Deliveries of this event" }).getByRole("link").first();
  await deliveryLink.waitFor();
  await deliveryLink.click();
  await page.waitForURL(/\/ui\/deliveries\/[^/?]+$/);
  // The delivery may still be in flight when the page loads: the live stream updates it.
  await page.locator("dd[data-delivery-status] .badge", { hasText: "failed" }).waitFor();
  await page.getByRole("list", { name: "Attempt timeline" }).getByRole("heading", { name: /HTTP 500/ }).waitFor();
  await shot(page, "delivery-failed");
  await page.getByRole("button", { name: "Replay this delivery" }).click();
  await page.waitForURL(/queued=1/);
  await page.waitForSelector('body[data-live="open"]');
  await page.locator("dd[data-delivery-status] .badge", { hasText: "succeeded" }).waitFor();
  await page.reload();
  await page.getByRole("list", { name: "Attempt timeline" }).getByRole("heading", { name: /HTTP 200/ }).waitFor();
  await shot(page, "delivery-replayed");

  step("create a route with a jq transform and dry-run it");
  await page.getByRole("link", { name: "Routes", exact: true }).click();
  await page.waitForURL(/\/ui\/routes$/);
  await page.getByLabel("Id (optional)").fill("orders");
  await page.getByLabel("Source").selectOption("src");
  await page.getByLabel("Destination").selectOption("dst");
  await page.getByLabel("Transform (jq, optional)").fill("{order_id: .body.order.id, doubled: (.body.order.total * 2)}");
  await page.getByRole("button", { name: "Create route" }).click();
  await page.waitForURL(/\/ui\/routes\/orders$/);
  await page.getByLabel("Event").selectOption(eventId);
  await page.getByRole("button", { name: "Dry run" }).click();
  const body = page.getByTestId("dry-run-body");
  await body.waitFor();
  const transformed = JSON.parse(await body.innerText());
  if (transformed.order_id !== 42 || transformed.doubled !== 19) {
    throw new Error(`unexpected dry-run body: ${JSON.stringify(transformed)}`);
  }
  await shot(page, "route-dry-run");

  step("create a webhook source, edit it, pause it behind its confirmation, resume it");
  await page.goto(`${base}/ui/sources`);
  const newSource = page.getByRole("region", { name: "New webhook source" });
  await newSource.getByLabel("Id", { exact: true }).fill("shop");
  await newSource.getByRole("combobox", { name: /^Verifier/ }).selectOption("shopify");
  await newSource.getByLabel(/^Signing secret/).fill("shop-s3cret");
  await newSource.getByRole("button", { name: "Create source" }).click();
  await page.waitForURL(/\/ui\/sources\/shop$/);
  if ((await page.content()).includes("shop-s3cret")) throw new Error("a secret was shown");
  await page.getByLabel("Largest body in bytes").fill("2048");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.waitForURL(/\/ui\/sources\/shop$/);
  const limit = await page.getByLabel("Largest body in bytes").inputValue();
  if (limit !== "2048") throw new Error(`the saved body limit reads ${limit}`);
  await page.getByRole("button", { name: "Disable shop" }).click();
  await page.locator("dl.facts .badge", { hasText: "disabled" }).waitFor();
  const paused = await page.request.post(`${base}/in/shop`, { data: "{}" });
  if (paused.status() !== 503) throw new Error(`a paused source answered ${paused.status()}`);
  await shot(page, "source-edit");
  await page.getByRole("button", { name: "Enable shop" }).click();
  await page.locator("dl.facts .badge", { hasText: "active" }).waitFor();

  // Every control on a page has an accessible name (label, aria-label or text).
  async function controlsAreNamed(page, path) {
    const unnamed = await page.evaluate(() =>
      Array.from(document.querySelectorAll("button, input:not([type=hidden]), select, textarea, a[href]"))
        .filter((el) => {
          const labelled = el.labels && el.labels.length > 0;
          const aria = el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
          const text = (el.textContent || "").trim();
          return !(labelled || aria || text);
        })
        .map((el) => el.outerHTML.slice(0, 120)),
    );
    if (unnamed.length) throw new Error(`${path}: controls without an accessible name:\n${unnamed.join("\n")}`);
  }

  step("every other page renders; save screenshots");
  for (const [name, path] of [
    ["overview", "/ui"],
    ["overview-day", "/ui?period=day"],
    ["deliveries", "/ui/deliveries"],
    ["dead-letters", "/ui/deliveries?status=failed"],
    ["bulk-replay", "/ui/replay?destination=dst"],
    ["sources", "/ui/sources"],
    ["destinations", "/ui/destinations"],
    ["routes", "/ui/routes"],
    ["tenants", "/ui/tenants"],
    ["connections", "/ui/connections"],
    ["syncs", "/ui/syncs"],
    ["source", "/ui/sources/shop"],
    ["destination", "/ui/destinations/dst"],
    ["route", "/ui/routes/orders"],
    ["events", "/ui/events"],
  ]) {
    const response = await page.goto(`${base}${path}`);
    if (response.status() !== 200) throw new Error(`${path} answered ${response.status()}`);
    await page.getByRole("heading", { level: 1 }).waitFor();
    await controlsAreNamed(page, path);
    await shot(page, name);
  }

  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/ui\/sign-in/);
  await page.goto(`${base}/ui`);
  await page.waitForURL(/\/ui\/sign-in/);

  if (errors.length) throw new Error(errors.join("\n"));
  console.log("dashboard browser test passed");
} catch (error) {
  console.error(`dashboard browser test FAILED: ${error.stack || error}`);
  if (errors.length) console.error(errors.join("\n"));
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
