// The console in Chromium, as a user would use it: sign in with an API key and the admin key,
// stream a demo-reasoner answer and watch it grow, stop it, run a whole answer and read its
// figures, reload the page in the middle of an answer and watch it resume, find both requests and their cost under Usage, create a key (read once), top it up and
// revoke it, look at Providers, switch the theme, sign out; then screenshots of every page in
// light and dark, at desktop and phone width. Env: SWITCHYARD_URL, SWITCHYARD_KEY,
// SWITCHYARD_ADMIN_KEY. Prints one JSON line of facts.

import { join } from 'node:path';
import { launch, env, until, assert, main, screenshotDir } from './browser.mjs';

const base = env('SWITCHYARD_URL');
const apiKey = env('SWITCHYARD_KEY');
const adminKey = env('SWITCHYARD_ADMIN_KEY');
const shots = screenshotDir();

const text = (page, sel) => page.locator(sel).first().textContent();

function watchPage(page, problems) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused|Uncaught/i.test(m.text())) problems.push(m.text());
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith('data:')) problems.push(`request outside the gateway: ${r.url()}`);
  });
}

async function scenario() {
  const browser = await launch();
  const problems = [];
  const facts = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
    const page = await context.newPage();
    watchPage(page, problems);

    // --- the page and its headers
    const resp = await page.goto(`${base}/`);
    assert(resp.status() === 200, `GET / is ${resp.status()}`);
    facts.csp = resp.headers()['content-security-policy'];

    // --- sign in
    await page.getByLabel('API key').fill(apiKey);
    await page.getByLabel('Admin key').fill(adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await until('signed in', async () => (await text(page, '#who')).includes('admin'));
    facts.who = await text(page, '#who');
    const storage = await page.evaluate(() => ({
      session: Object.keys(sessionStorage),
      local: JSON.stringify(localStorage),
      cookie: document.cookie,
    }));
    assert(storage.session.length === 2, `session storage holds both keys: ${storage.session}`);
    assert(!storage.local.includes('sk-') && !storage.local.includes(adminKey), 'no key in localStorage');
    assert(storage.cookie === '', 'no cookie');

    // --- stream a demo-reasoner answer, watch it grow, stop it
    const pg = page.locator('#page-playground');
    const usage = page.locator('#page-usage');
    const keys = page.locator('#page-keys');
    await until('the model list', async () => (await page.locator('#pg-model option').allTextContents()).includes('demo-reasoner'));
    await pg.getByLabel('Model', { exact: true }).selectOption('demo-reasoner');
    await pg.getByLabel('User message').fill('Tell me a long story about gateways.');
    await pg.getByRole('button', { name: 'Send', exact: true }).click();
    const reasoning = await until('reasoning shown apart', async () => {
      const t = await text(page, '#pg-reasoning-text');
      return (await page.locator('#pg-reasoning').isVisible()) && t.length > 0 && t;
    });
    const observations = [];
    let seen = 0;
    while (observations.length < 4) {
      const len = await until('the answer to grow', async () => {
        const n = (await text(page, '#pg-answer')).length;
        return n > seen && n;
      });
      observations.push(len);
      seen = len;
    }
    facts.observations = observations;
    facts.reasoning_chars = reasoning.length;
    await page.screenshot({ path: join(shots, 'playground-streaming-light.png'), fullPage: true });
    await pg.getByRole('button', { name: 'Stop', exact: true }).click();
    await until('stopped', async () => (await text(page, '#st-status')) === 'stopped');
    const stoppedAt = (await text(page, '#pg-answer')).length;
    facts.stopped_at_chars = stoppedAt;
    assert(await pg.getByRole('button', { name: 'Send', exact: true }).isEnabled(), 'Send is enabled again');
    assert(await pg.getByRole('button', { name: 'Stop', exact: true }).isDisabled(), 'Stop is disabled');

    // --- a whole answer: figures from the final chunk
    await pg.getByLabel('Model', { exact: true }).selectOption('demo-chat');
    await pg.getByLabel('User message').fill('Say hello.');
    await pg.getByRole('button', { name: 'Send', exact: true }).click();
    await until('the answer to finish', async () => (await text(page, '#st-status')).startsWith('finished'), 15000);
    facts.finished = {
      status: await text(page, '#st-status'),
      ttft: await text(page, '#st-ttft'),
      tps: await text(page, '#st-tps'),
      prompt: await text(page, '#st-prompt'),
      completion: await text(page, '#st-completion'),
      cost: await text(page, '#st-cost'),
      answer: await text(page, '#pg-answer'),
    };
    assert(/^\d+ ms$/.test(facts.finished.ttft), `ttft ${facts.finished.ttft}`);
    assert(/^\$\d+\.\d+$|^\$0$/.test(facts.finished.cost), `cost ${facts.finished.cost}`);
    for (const lang of ['curl', 'Python', 'Node']) {
      await pg.getByRole('button', { name: lang, exact: true }).click();
      const snippet = await text(page, '#snippet');
      assert(snippet.includes('SWITCHYARD_API_KEY') && !snippet.includes(apiKey), `${lang} snippet names the variable, never the key`);
      assert(snippet.includes(`${base}/v1`) && snippet.includes('Say hello.') && snippet.includes('demo-chat'), `${lang} snippet is the request`);
      facts[`snippet_${lang.toLowerCase()}`] = snippet.split('\n')[0];
    }
    await page.screenshot({ path: join(shots, 'playground-finished-light.png'), fullPage: true });

    // --- a reload in the middle of an answer resumes it where it was (a resumable stream)
    await pg.getByLabel('Model', { exact: true }).selectOption('paced-story');
    await pg.getByLabel('User message').fill('Tell me a story.');
    await pg.getByRole('button', { name: 'Send', exact: true }).click();
    const beforeReload = await until('part of the answer', async () => {
      const t = await text(page, '#pg-answer');
      return t.split(/\s+/).filter(Boolean).length >= 8 && t;
    });
    await page.reload();
    await until('the answer to resume and finish', async () => (await text(page, '#st-status')).includes('resumed after a reload'), 20000);
    const afterReload = await text(page, '#pg-answer');
    assert(afterReload.startsWith(beforeReload.slice(0, Math.max(0, beforeReload.length - 12))), 'the answer picked up where it was');
    facts.resumed = {
      before_words: beforeReload.split(/\s+/).filter(Boolean).length,
      words: afterReload.split(/\s+/).filter(Boolean).length,
      status: await text(page, '#st-status'),
    };

    // --- failures, readably: an in-stream error after some text, then an HTTP error
    for (const [model, name] of [['breaks-midway', 'midway'], ['down', 'down']]) {
      await pg.getByLabel('Model', { exact: true }).selectOption(model);
      await pg.getByRole('button', { name: 'Send', exact: true }).click();
      await until(`${model} to fail`, async () => (await text(page, '#st-status')) === 'failed', 15000);
      facts[name] = { error: await text(page, '#pg-error'), answer: await text(page, '#pg-answer'), status: await text(page, '#st-status') };
      assert(await page.locator('#pg-error').isVisible(), 'the error is shown');
    }
    await page.screenshot({ path: join(shots, 'playground-error-light.png'), fullPage: true });

    // --- Usage: the stopped request and the whole one, with their cost (keyboard: focus + Enter)
    await page.locator('.tab[data-page="usage"]').focus();
    await page.keyboard.press('Enter');
    await until('the usage page', () => page.locator('#page-usage').isVisible());
    const rows = async () => page.locator('#us-requests tbody tr[data-request-id]').evaluateAll((trs) => trs.map((tr) => ({
      id: tr.dataset.requestId,
      cells: [...tr.children].map((td) => td.textContent),
    })));
    const found = await until('both requests under Usage', async () => {
      const all = await rows();
      const stopped = all.find((r) => r.cells[3] === 'demo-reasoner' && r.cells[7] === 'cancelled');
      const whole = all.find((r) => r.cells[3] === 'demo-chat' && r.cells[7] === 'stop');
      if (stopped && whole) return { stopped, whole };
      await usage.getByRole('button', { name: 'Refresh' }).click();
      return null;
    }, 15000);
    facts.usage_stopped = { id: found.stopped.id, cost: found.stopped.cells[11], status: found.stopped.cells[6] };
    facts.usage_whole = { id: found.whole.id, cost: found.whole.cells[11] };
    assert(found.whole.cells[11] === facts.finished.cost, `Usage shows the playground's cost (${found.whole.cells[11]} vs ${facts.finished.cost})`);
    facts.chart_bars = await page.locator('#us-chart svg rect').count();
    assert(facts.chart_bars >= 2, 'the chart has bars');
    facts.by_model = await page.locator('#us-by-model tbody tr').allTextContents();
    // filters
    await usage.getByLabel('Model', { exact: true }).fill('demo-reasoner');
    await usage.getByRole('button', { name: 'Refresh' }).click();
    await until('the model filter', async () => {
      const all = await rows();
      return all.length > 0 && all.every((r) => r.cells[3] === 'demo-reasoner');
    });
    await page.locator('#us-model').fill('');
    await page.locator('#us-status').fill('599');
    await usage.getByRole('button', { name: 'Refresh' }).click();
    await until('the status filter', async () => (await rows()).length === 0 && (await text(page, '#us-requests tbody')).includes('No requests match'));
    await page.locator('#us-status').fill('');
    await usage.getByRole('button', { name: 'Refresh' }).click();
    await until('the table back', async () => (await rows()).length >= 2);

    // --- Keys: create (read once), top up, revoke
    await page.getByRole('button', { name: 'Keys', exact: true }).click();
    await until('the keys page', () => page.locator('#keys-table tbody tr').count());
    await keys.getByLabel('Name').fill('browser-made');
    await keys.getByLabel('Balance (USD)').fill('1.50');
    await keys.getByLabel('Requests/min').fill('60');
    await keys.getByLabel('Models').fill('demo-chat');
    await keys.getByRole('button', { name: 'Create key' }).click();
    const secret = await until('the new key shown', async () => {
      const v = await text(page, '#new-key-value');
      return (await page.locator('#new-key').isVisible()) && v.startsWith('sk-sy-') && v;
    });
    await page.screenshot({ path: join(shots, 'keys-created-light.png'), fullPage: true });
    const row = page.locator('tr[data-key-name="browser-made"]');
    await until('the new key listed', () => row.count());
    facts.new_key_row = await row.textContent();
    assert(!facts.new_key_row.includes(secret), 'the list never shows the secret');
    const works = await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
    facts.new_key_models_status = works.status;
    facts.new_key_models = (await works.json()).data?.map((m) => m.id);
    await page.getByRole('button', { name: 'Copy key' }).click();
    await page.getByRole('button', { name: 'I saved it' }).click();
    assert(!(await page.locator('#new-key').isVisible()) && (await text(page, '#new-key-value')) === '', 'the key is gone once saved');
    await row.getByLabel(/Top-up amount/).fill('2');
    await row.getByRole('button', { name: 'Top up' }).click();
    await until('the top-up', async () => (await row.textContent()).includes('$3.5'));
    await row.getByRole('button', { name: 'Edit' }).click();
    await keys.getByLabel('Budget (USD)').fill('2');
    await keys.getByLabel('Budget period').selectOption('day');
    await keys.getByLabel('Tokens/min').fill('5000');
    await keys.getByRole('button', { name: 'Save changes' }).click();
    await until('the edit', async () => (await row.textContent()).includes('of $2/day'));
    facts.edited_row = await row.textContent();
    assert(facts.edited_row.includes('tpm 5000') && facts.edited_row.includes('rpm 60'), `limits kept and changed: ${facts.edited_row}`);
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.getByRole('button', { name: /Confirm revoking/ }).click();
    await until('revoked', async () => (await row.textContent()).includes('revoked'));
    const after = await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
    facts.revoked_key_status = after.status;

    // --- Providers
    await page.getByRole('button', { name: 'Providers', exact: true }).click();
    await until('providers listed', () => page.locator('[data-provider]').count());
    facts.providers = await page.locator('[data-provider] h3').allTextContents();
    facts.provider_rows = await page.locator('[data-provider] tbody tr').allTextContents();

    // --- theme toggle
    const before = await page.evaluate(() => document.documentElement.dataset.theme);
    await page.locator('#theme-toggle').click();
    facts.theme_toggle = [before, await page.evaluate(() => document.documentElement.dataset.theme)];
    await page.locator('#theme-toggle').click();

    // --- sign out
    await page.getByRole('button', { name: 'Sign out' }).click();
    await until('signed out', () => page.locator('#sign-in').isVisible());
    facts.after_sign_out = await page.evaluate(() => Object.keys(sessionStorage).length);
    await context.close();

    // --- screenshots: every page, light and dark, desktop and phone width
    facts.screenshots = [];
    for (const [mode, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 375, height: 812 }]]) {
      for (const scheme of ['light', 'dark']) {
        const ctx = await browser.newContext({ viewport, colorScheme: scheme, deviceScaleFactor: 1 });
        const p = await ctx.newPage();
        watchPage(p, problems);
        await p.goto(`${base}/`);
        await p.waitForSelector('#sign-in-form');
        let name = `signin-${scheme}-${mode}.png`;
        await p.screenshot({ path: join(shots, name), fullPage: true });
        facts.screenshots.push(name);
        await p.getByLabel('API key').fill(apiKey);
        await p.getByLabel('Admin key').fill(adminKey);
        await p.getByRole('button', { name: 'Sign in' }).click();
        await until('signed in', () => p.locator('#app').isVisible());
        if (mode === 'phone') {
          const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert(overflow <= 0, `no sideways scrolling at 375 px (${overflow} px too wide)`);
        }
        for (const [page2, ready] of [['playground', '#pg-model option'], ['usage', '#us-requests tbody tr'], ['keys', '#keys-table tbody tr'], ['providers', '[data-provider]']]) {
          await p.locator(`.tab[data-page="${page2}"]`).click();
          await until(`${page2} ready`, () => p.locator(ready).count());
          name = `${page2}-${scheme}-${mode}.png`;
          await p.screenshot({ path: join(shots, name), fullPage: true });
          facts.screenshots.push(name);
        }
        await ctx.close();
      }
    }
  } finally {
    await browser.close();
  }
  facts.problems = problems;
  assert(problems.length === 0, `no page errors, CSP refusals or outside requests: ${problems.join('; ')}`);
  return facts;
}

main('console', scenario);
