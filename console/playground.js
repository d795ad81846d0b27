// The playground: pick a model (from /v1/models), write a system and a user message, and watch
// the answer stream token by token (fetch + a stream reader + the SSE parser), the reasoning apart
// in a collapsible block; Stop aborts; afterwards time to first token, tokens/s, tokens and cost.

import { session, asApi, errorFrom, showError, copy } from './api.js';
import { readSse } from './sse.js';
import { chatBody, SNIPPETS } from './snippets.js';

const $ = (id) => document.getElementById(id);
let controller = null;
let snippetLang = 'curl';
let loaded = false;

function currentBody() {
  return chatBody($('pg-model').value, $('pg-system').value, $('pg-user').value);
}

function renderSnippet() {
  $('snippet').textContent = SNIPPETS[snippetLang](currentBody());
}

async function loadModels() {
  const select = $('pg-model');
  try {
    const list = await asApi('/v1/models');
    const previous = select.value;
    select.replaceChildren(...list.data.map((m) => new Option(m.id, m.id)));
    const preferred = list.data.find((m) => m.id === previous) || list.data.find((m) => m.id === 'demo-reasoner');
    if (preferred) select.value = preferred.id;
    showError($('pg-error'), null);
  } catch (e) {
    showError($('pg-error'), e);
  }
  renderSnippet();
}

function setStat(id, text) { $(id).textContent = text; }

async function send(event) {
  event.preventDefault();
  if (controller) return;
  const body = currentBody();
  const answer = $('pg-answer');
  const reasoning = $('pg-reasoning-text');
  const answerText = document.createTextNode('');
  const reasoningText = document.createTextNode('');
  answer.replaceChildren(answerText);
  reasoning.replaceChildren(reasoningText);
  $('pg-reasoning').hidden = true;
  $('pg-reasoning').open = true;
  showError($('pg-error'), null);
  for (const id of ['st-ttft', 'st-tps', 'st-prompt', 'st-completion', 'st-cost']) setStat(id, '–');
  setStat('st-status', 'streaming…');
  $('pg-stats').hidden = false;
  $('pg-send').disabled = true;
  $('pg-stop').disabled = false;
  answer.setAttribute('aria-busy', 'true');

  controller = new AbortController();
  const started = performance.now();
  let first = null;
  let last = null;
  let chunks = 0;
  let usage = null;
  let finish = null;
  let outcome = 'done';
  try {
    const resp = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${session.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!resp.ok) throw await errorFrom(resp);
    await readSse(resp, ({ data }) => {
      if (data === '[DONE]') return;
      let chunk;
      try { chunk = JSON.parse(data); } catch { throw new Error(`The gateway sent an event that is not JSON: ${data.slice(0, 200)}`); }
      if (chunk.error) {
        const e = chunk.error;
        throw new Error(`The stream failed: ${e.message || JSON.stringify(e)}${e.code ? ` (${e.code})` : ''}`);
      }
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) return;
      if (choice.finish_reason) finish = choice.finish_reason;
      const delta = choice.delta || {};
      const text = delta.content || '';
      const thought = delta.reasoning_content || '';
      if (text || thought) {
        const now = performance.now();
        if (first === null) { first = now; setStat('st-ttft', `${Math.round(now - started)} ms`); }
        last = now;
        chunks += 1;
      }
      if (thought) {
        $('pg-reasoning').hidden = false;
        reasoningText.appendData(thought);
      }
      if (text) answerText.appendData(text);
    });
  } catch (e) {
    if (e.name === 'AbortError') {
      outcome = 'stopped';
    } else {
      outcome = 'failed';
      showError($('pg-error'), e);
    }
  } finally {
    controller = null;
    $('pg-send').disabled = false;
    $('pg-stop').disabled = true;
    answer.setAttribute('aria-busy', 'false');
  }
  const completion = usage ? usage.completion_tokens : chunks;
  if (first !== null && last !== null && last > first) {
    setStat('st-tps', (completion / ((last - first) / 1000)).toFixed(1));
  }
  if (usage) {
    setStat('st-prompt', String(usage.prompt_tokens ?? '–'));
    setStat('st-completion', String(usage.completion_tokens ?? '–'));
    setStat('st-cost', usage.cost !== undefined ? `$${usage.cost}` : '–');
  } else if (outcome === 'stopped') {
    setStat('st-completion', `≈${chunks} (stopped)`);
    setStat('st-cost', 'see Usage');
  }
  setStat('st-status', outcome === 'done' ? `finished (${finish || 'no finish reason'})` : outcome);
  if (outcome === 'done') $('pg-reasoning').open = false;
}

function stop() {
  if (controller) controller.abort();
}

export function initPlayground() {
  $('pg-form').addEventListener('submit', send);
  $('pg-stop').addEventListener('click', stop);
  for (const id of ['pg-model', 'pg-system', 'pg-user']) $(id).addEventListener('input', renderSnippet);
  for (const b of document.querySelectorAll('.snip')) {
    b.addEventListener('click', () => {
      snippetLang = b.dataset.lang;
      for (const o of document.querySelectorAll('.snip')) o.setAttribute('aria-pressed', String(o === b));
      renderSnippet();
    });
  }
  $('snip-copy').addEventListener('click', () => copy($('snippet').textContent));
}

export function showPlayground() {
  if (controller) return; // a stream is running: leave its buttons as they are
  const hasKey = Boolean(session.apiKey);
  $('pg-needs-key').hidden = hasKey;
  $('pg-form').querySelectorAll('select, textarea, button').forEach((n) => { n.disabled = !hasKey || n.id === 'pg-stop'; });
  if (hasKey && !loaded) { loaded = true; loadModels(); }
  renderSnippet();
}

export function resetPlayground() {
  loaded = false;
  stop();
}
