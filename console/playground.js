// The playground: pick a model (from /v1/models), write a system and a user message, and watch
// the answer stream token by token (fetch + a stream reader + the SSE parser), the reasoning apart
// in a collapsible block; Stop stops it; afterwards time to first token, tokens/s, tokens and cost.
// The stream is resumable (`x-switchyard-resumable`): its request id, the last event id and the
// text so far are kept in this tab's sessionStorage, so a reload in the middle of an answer picks
// it up where it was (`GET /v1/streams/{id}` with `Last-Event-ID`) instead of losing it.

import { session, asApi, errorFrom, showError, copy } from './api.js';
import { readSse } from './sse.js';
import { chatBody, SNIPPETS } from './snippets.js';

const $ = (id) => document.getElementById(id);
let controller = null;
let snippetLang = 'curl';
let loaded = false;
/** The request id of the stream running now (what Stop cancels). */
let streamId = null;

/** The stream in flight, as far as this tab has read it (survives a reload of the tab). */
const PENDING = 'switchyard.playgroundStream';
const pending = {
  load() { try { return JSON.parse(sessionStorage.getItem(PENDING)); } catch { return null; } },
  save(p) { sessionStorage.setItem(PENDING, JSON.stringify(p)); },
  clear() { sessionStorage.removeItem(PENDING); },
};

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
  await run(null);
}

/** Streams a new answer, or with `resume` ({id, lastId, answer, reasoning, model}) the rest of one
 * a reload interrupted. */
async function run(resume) {
  const body = currentBody();
  const answer = $('pg-answer');
  const reasoning = $('pg-reasoning-text');
  const answerText = document.createTextNode('');
  const reasoningText = document.createTextNode('');
  answer.replaceChildren(answerText);
  reasoning.replaceChildren(reasoningText);
  if (resume) {
    answerText.appendData(resume.answer || '');
    reasoningText.appendData(resume.reasoning || '');
  }
  $('pg-reasoning').hidden = !(resume && resume.reasoning);
  $('pg-reasoning').open = true;
  showError($('pg-error'), null);
  for (const id of ['st-ttft', 'st-tps', 'st-prompt', 'st-completion', 'st-cost']) setStat(id, '–');
  setStat('st-status', resume ? 'resuming…' : 'streaming…');
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
  const progress = resume ? { ...resume } : null;
  try {
    const resp = resume
      ? await fetch(`/v1/streams/${encodeURIComponent(resume.id)}`, {
        headers: { authorization: `Bearer ${session.apiKey}`, 'last-event-id': String(resume.lastId) },
        signal: controller.signal,
      })
      : await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: {
          authorization: `Bearer ${session.apiKey}`,
          'content-type': 'application/json',
          'x-switchyard-resumable': 'true',
        },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    if (!resp.ok) throw await errorFrom(resp);
    streamId = resume ? resume.id : resp.headers.get('x-request-id');
    const saved = progress || { id: streamId, lastId: null, answer: '', reasoning: '', model: body.model };
    await readSse(resp, ({ data, id }) => {
      if (id !== null && id !== undefined) {
        saved.lastId = id;
        saved.answer = answerText.data;
        saved.reasoning = reasoningText.data;
        pending.save(saved);
      }
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
      if (id !== null && id !== undefined) {
        saved.answer = answerText.data;
        saved.reasoning = reasoningText.data;
        pending.save(saved);
      }
    });
    pending.clear();
  } catch (e) {
    if (e.name === 'AbortError') {
      outcome = 'stopped';
    } else {
      outcome = 'failed';
      pending.clear();
      showError($('pg-error'), e);
    }
  } finally {
    controller = null;
    streamId = null;
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
  const resumed = resume ? ', resumed after a reload' : '';
  setStat('st-status', outcome === 'done' ? `finished (${finish || 'no finish reason'}${resumed})` : outcome);
  if (outcome === 'done') $('pg-reasoning').open = false;
}

/** Stop: the stream is resumable, so leaving it is not enough; it is stopped at the gateway
 * (its upstream cancelled, billed for what was generated), then the reading ends. */
function stop() {
  pending.clear();
  if (streamId) {
    fetch(`/v1/streams/${encodeURIComponent(streamId)}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${session.apiKey}` },
    }).catch(() => {});
  }
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
  // An answer a reload interrupted: pick it up where it was.
  const interrupted = hasKey ? pending.load() : null;
  if (interrupted && interrupted.id && interrupted.lastId !== null && !controller) run(interrupted);
}

export function resetPlayground() {
  loaded = false;
  stop();
  pending.clear();
}
