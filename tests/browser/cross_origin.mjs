// The seeds' browser clients, on a page served from another origin (a tiny server on port 0): the
// plain `fetch` stream reader of seed 002 (to /v1/chat/completions) and the React-style reader of
// seed 004 (to /v1/llm/chat/completions), each calling the gateway cross-origin with a bearer key
// (a preflighted request) and appending the streamed text as it arrives. Env: SWITCHYARD_URL,
// SWITCHYARD_KEY. Prints one JSON line of facts.

import { createServer } from 'node:http';
import { launch, env, until, assert, main } from './browser.mjs';

const gateway = env('SWITCHYARD_URL');
const apiKey = env('SWITCHYARD_KEY');

// The page: the seeds' reading loops as documented (line split on "\n", `data: ` lines, [DONE]).
const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>seed clients</title></head><body>
<pre id="output"></pre><pre id="response"></pre>
<script>
async function streamChat(base, key, message) {
  const response = await fetch(base + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: message }], stream: true })
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    const chunk = decoder.decode(value);
    const lines = chunk.split('\\n').filter(line => line.startsWith('data: '));
    for (const line of lines) {
      const data = line.slice(6);
      if (data === '[DONE]') return;
      const parsed = JSON.parse(data);
      const content = parsed.choices?.[0]?.delta?.content;
      if (content) {
        document.getElementById('output').textContent += content;
      }
    }
  }
}
let response = '';
function setResponse(f) { response = f(response); document.getElementById('response').textContent = response; }
async function sendMessage(base, key, message) {
  setResponse(() => '');
  const res = await fetch(base + '/v1/llm/chat/completions', {
    method: 'POST',
    headers: { 'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: message }], stream: true })
  });
  const reader = res.body?.getReader();
  const decoder = new TextDecoder();
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    const chunk = decoder.decode(value);
    const lines = chunk.split('\\n').filter(line => line.trim());
    for (const line of lines) {
      if (line.startsWith('data: ')) {
        const data = line.slice(6);
        if (data === '[DONE]') continue;
        try {
          const json = JSON.parse(data);
          const content = json.choices[0]?.delta?.content || '';
          setResponse(prev => prev + content);
        } catch (e) {
          console.error('Parse error:', e);
        }
      }
    }
  }
  return 'finished';
}
</script></body></html>`;

async function scenario() {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  // What the same request answers without a browser, for comparison.
  const direct = await fetch(`${gateway}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo-chat', messages: [{ role: 'user', content: 'hello' }] }),
  });
  const expected = (await direct.json()).choices[0].message.content;
  const browser = await launch();
  const facts = { page_origin: origin, gateway_origin: new URL(gateway).origin };
  const errors = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(`${origin}/`);
    assert(facts.page_origin !== facts.gateway_origin, 'the page is on another origin');
    for (const [fn, target] of [['streamChat', '#output'], ['sendMessage', '#response']]) {
      const run = page.evaluate(([f, base, key]) => window[f](base, key, 'hello'), [fn, gateway, apiKey]);
      // The text grows while the stream runs (several observations), then the call returns.
      const seen = [];
      let last = 0;
      const growth = until(`${fn}'s text to grow`, async () => {
        const n = (await page.locator(target).textContent()).length;
        if (n > last) { seen.push(n); last = n; }
        return seen.length >= 3;
      }, 15000);
      await Promise.all([run, growth]);
      const got = await page.locator(target).textContent();
      facts[fn] = { observations: seen, text: got };
      assert(got === expected, `${fn} received the whole answer (${JSON.stringify(got)} vs ${JSON.stringify(expected)})`);
    }
  } finally {
    await browser.close();
    server.close();
  }
  facts.expected = expected;
  assert(errors.length === 0, `no page errors (CORS refusals show here): ${errors.join('; ')}`);
  return facts;
}

main('cross_origin', scenario);
