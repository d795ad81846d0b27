// Shared by the browser scripts: launching Debian's Chromium through playwright-core with the flags
// the tests use, waiting on conditions with a deadline (never a fixed sleep), and the last stdout
// line of facts that crates/gateway/tests/integration/browser.rs reads.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

export async function launch() {
  return chromium.launch({
    executablePath: process.env.SWITCHYARD_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

export function screenshotDir() {
  const dir = process.env.SWITCHYARD_SCREENSHOTS || join(import.meta.dirname, 'screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Polls `check` (async, returning a truthy value when done) until it holds or `ms` pass. */
export async function until(what, check, ms = 10000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 25)); // a poll interval, not a wait for work
  }
}

export function assert(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}

/** Prints the facts as the last stdout line and exits with the right status. */
export async function main(scenario, body) {
  const facts = { scenario, ok: false };
  try {
    Object.assign(facts, await body());
    facts.ok = true;
  } catch (e) {
    facts.error = String(e && e.stack ? e.stack : e);
  }
  process.stdout.write(`${JSON.stringify(facts)}\n`);
  process.exit(facts.ok ? 0 : 1);
}
