// Client conformance scenarios for Switchyard with the official `openai` Node SDK (and the seeds'
// browser-style fetch readers): each scenario runs the seeds' example code, with only base URL, key
// and model changed, against a running gateway and checks what the client saw.
// Usage: node conformance.mjs SCENARIO, with SWITCHYARD_BASE_URL (http://HOST:PORT/v1) and
// SWITCHYARD_API_KEY set; SWITCHYARD_EXPECT_TEXT, when set, is the exact answer text the mock produces.
// Exit 0 on success; otherwise a message on stderr and a non-zero exit. The last stdout line is a JSON
// object with the facts the Rust test checks (crates/gateway/tests/integration/sdk.rs).

import OpenAI from 'openai';
import { VERSION as SDK_VERSION } from 'openai/version';

const BASE_URL = process.env.SWITCHYARD_BASE_URL;
const API_KEY = process.env.SWITCHYARD_API_KEY;
const EXPECT_TEXT = process.env.SWITCHYARD_EXPECT_TEXT;
const MODEL = process.env.SWITCHYARD_MODEL ?? 'm';
const REASONING_MODEL = process.env.SWITCHYARD_REASONING_MODEL ?? 'deepseek-r';
const EMBED_MODEL = process.env.SWITCHYARD_EMBED_MODEL ?? 'e';
// A key without balance, for the 402 scenario.
const POOR_KEY = process.env.SWITCHYARD_POOR_KEY;

// A money amount as Switchyard writes it in JSON: a decimal string in USD.
const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

class Failed extends Error {}

function check(condition, message) {
  if (!condition) throw new Failed(message);
}

function checkText(text) {
  check(text, 'no content was received');
  if (EXPECT_TEXT !== undefined) {
    check(text === EXPECT_TEXT, `content ${JSON.stringify(text)} !== expected ${JSON.stringify(EXPECT_TEXT)}`);
  }
}

if (!BASE_URL || !API_KEY) {
  console.error('SWITCHYARD_BASE_URL and SWITCHYARD_API_KEY must be set');
  process.exit(2);
}

const client = new OpenAI({
  apiKey: API_KEY,
  baseURL: BASE_URL,
});

// Seed 000/004: `for await (const chunk of stream)` writing delta.content.
async function stream_text() {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Explain quantum computing' }],
    stream: true,
  });

  let text = '';
  const roles = [];
  for await (const chunk of stream) {
    roles.push(chunk.choices[0]?.delta?.role);
    const content = chunk.choices[0]?.delta?.content;
    if (content) process.stdout.write(content);
    if (content) text += content;
  }
  process.stdout.write('\n');
  checkText(text);
  check(roles[0] === 'assistant', `first chunk's delta.role is ${JSON.stringify(roles[0])}, not "assistant"`);
  check(roles.slice(1).every((r) => r === undefined || r === null), `role repeated: ${JSON.stringify(roles)}`);
  return { text, chunks: roles.length };
}

// Seed 000, thinking mode: reasoning_content to stderr, content to stdout.
async function reasoning() {
  const stream = await client.chat.completions.create({
    model: REASONING_MODEL,
    messages: [{ role: 'user', content: 'Prove that the square root of 2 is irrational' }],
    stream: true,
  });

  let thinkingText = '';
  let text = '';
  let order = '';
  for await (const chunk of stream) {
    // Reasoning (chain of thought)
    const thinking = chunk.choices[0]?.delta?.reasoning_content;
    if (thinking) process.stderr.write(thinking);
    if (thinking) (thinkingText += thinking), (order += 'r');

    // Final answer
    const content = chunk.choices[0]?.delta?.content;
    if (content) process.stdout.write(content);
    if (content) (text += content), (order += 'c');
  }
  process.stdout.write('\n');
  check(thinkingText, 'no delta.reasoning_content was received');
  checkText(text);
  check(!order.slice(order.indexOf('c')).includes('r'), `reasoning arrived after content: ${order}`);
  return { reasoning: thinkingText, text };
}

async function non_stream() {
  const completion = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Say hello' }],
  });
  const text = completion.choices[0].message.content;
  checkText(text);
  check(completion.usage, 'the response has no usage');
  const cost = completion.usage.cost;
  check(typeof cost === 'string' && DECIMAL.test(cost), `usage.cost is ${JSON.stringify(cost)}, not a decimal string`);
  return { text, cost, usage: completion.usage };
}

// The Rust test sets the mock up for a long, slow answer (the gateway forwards no `mock` field), so the
// stream is still running when the client aborts, and checks that the mock saw the disconnect promptly.
// Seed 000: cancel with an AbortController (after 3 chunks instead of 5 seconds).
async function abort() {
  const controller = new AbortController();

  const stream = await client.chat.completions.create(
    {
      model: MODEL,
      messages: [{ role: 'user', content: 'Write a long essay' }],
      stream: true,
    },
    { signal: controller.signal },
  );

  let chunks = 0;
  let abortedAt = null;
  try {
    for await (const chunk of stream) {
      chunks += 1;
      if (chunks === 3) {
        abortedAt = performance.timeOrigin + performance.now();
        controller.abort();
      }
    }
  } catch (e) {
    if (!(e instanceof OpenAI.APIUserAbortError) && e?.name !== 'AbortError') throw e;
  }
  check(abortedAt !== null, `only ${chunks} chunks arrived before the end`);
  return { chunks: Math.min(chunks, 3), chunks_seen: chunks, aborted_at_ms: abortedAt };
}

async function bad_key() {
  const bad = new OpenAI({ apiKey: 'sk-this-key-does-not-exist', baseURL: BASE_URL });
  try {
    await bad.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
  } catch (e) {
    if (e instanceof OpenAI.AuthenticationError) {
      check(e.status === 401, `AuthenticationError with status ${e.status}`);
      check(e.error?.message, `error has no message: ${JSON.stringify(e.error)}`);
      return { status: e.status, message: e.message, error: e.error };
    }
    throw new Failed(`expected OpenAI.AuthenticationError, got ${e?.constructor?.name}: ${e?.message}`);
  }
  throw new Failed('a wrong key was accepted');
}

async function stream_error() {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Write a short poem' }],
    stream: true,
  });
  let text = '';
  try {
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content || '';
    }
  } catch (e) {
    check(e instanceof OpenAI.APIError, `expected OpenAI.APIError, got ${e?.constructor?.name}: ${e?.message}`);
    check(text, `the error came before any content: ${e.message}`);
    return { text, error_type: e.constructor.name, message: e.message, error: e.error };
  }
  throw new Failed(`the stream ended without an error after ${JSON.stringify(text)}`);
}

// A stand-in for the browser's `document`, so the seeds' page code runs unchanged.
function fakeDocument() {
  const output = { textContent: '' };
  return { output, getElementById: (id) => (id === 'output' ? output : null) };
}

// Seed 002 ("Web application pattern"), verbatim apart from the URL, key and model. Note the seed's
// `split('\\n')`: it splits on a literal backslash-n, so each network read is treated as one line.
async function seed002StreamChat(message, document) {
  const response = await fetch(`${BASE_URL}/chat/completions`, {
    method: 'POST',
    headers: {
      'Authorization': `Bearer ${API_KEY}`,
      'Content-Type': 'application/json'
    },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: message }],
      stream: true
    })
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

// Seed 004 (React example's sendMessage), with setResponse collecting into a string; it uses the
// `/v1/llm` prefix as the seed does.
async function seed004SendMessage(message) {
  let response = '';
  const setResponse = (f) => { response = typeof f === 'function' ? f(response) : f; };
  const origin = new URL(BASE_URL).origin;

  const res = await fetch(`${origin}/v1/llm/chat/completions`, {
    method: 'POST',
    headers: {
      'Authorization': `Bearer ${API_KEY}`,
      'Content-Type': 'application/json'
    },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: message }],
      stream: true
    })
  });

  const reader = res.body?.getReader();
  const decoder = new TextDecoder();
  const parseErrors = [];

  while (true) {
    const { done, value } = await reader.read();
    if (done) break;

    const chunk = decoder.decode(value);
    const lines = chunk.split('\n').filter(line => line.trim());

    for (const line of lines) {
      if (line.startsWith('data: ')) {
        const data = line.slice(6);
        if (data === '[DONE]') continue;

        try {
          const json = JSON.parse(data);
          const content = json.choices[0]?.delta?.content || '';
          setResponse(prev => prev + content);
        } catch (e) {
          parseErrors.push(`${e.message}: ${data}`);
        }
      }
    }
  }
  return { response, parseErrors };
}

async function fetch_reader() {
  // The React-style reader (seed 004) must collect the exact answer with no parse error.
  const react = await seed004SendMessage('Write a poem');
  check(react.parseErrors.length === 0, `seed 004 reader hit parse errors: ${react.parseErrors.join(' | ')}`);
  checkText(react.response);

  // The seed 002 code as written. Its `split('\\n')` splits on a literal backslash-n, so it treats
  // each network read as one line: it works only while a read holds exactly one event, and it always
  // throws on `data: [DONE]`, whose data keeps the event's trailing newlines (against any server, OpenAI
  // included). So this only checks that what it collected is a correct prefix of the answer and that
  // its failure is that JSON.parse, and reports the rest.
  const document = fakeDocument();
  let seed002Error = null;
  try {
    await seed002StreamChat('Write a poem', document);
  } catch (e) {
    check(e instanceof SyntaxError, `seed 002 reader failed with ${e?.name}: ${e?.message}`);
    seed002Error = `${e.name}: ${e.message}`;
  }
  const seed002Text = document.getElementById('output').textContent;
  if (EXPECT_TEXT !== undefined) {
    check(EXPECT_TEXT.startsWith(seed002Text), `seed 002 reader collected ${JSON.stringify(seed002Text)}`);
  }
  return { text: react.response, seed002_text: seed002Text, seed002_error: seed002Error };
}

// `client.chat.completions.stream(...)`: the final message must equal the streamed text.
async function stream_helper() {
  const runner = client.chat.completions.stream({
    model: MODEL,
    messages: [{ role: 'user', content: 'Write a short poem' }],
  });
  let text = '';
  runner.on('content', (delta) => {
    text += delta;
  });
  const final = await runner.finalChatCompletion();
  checkText(text);
  const message = final.choices[0].message;
  check(message.content === text, `final content ${JSON.stringify(message.content)} !== streamed ${JSON.stringify(text)}`);
  check(message.role === 'assistant', `final role is ${JSON.stringify(message.role)}`);
  check(final.id?.startsWith('chatcmpl'), `final id is ${JSON.stringify(final.id)}`);
  check(final.choices[0].finish_reason === 'stop', `finish_reason ${final.choices[0].finish_reason}`);
  return { text, id: final.id, role: message.role };
}

async function include_usage() {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Write a short poem' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  check(chunks.length > 0, 'no chunks');
  const last = chunks[chunks.length - 1];
  check(Array.isArray(last.choices) && last.choices.length === 0, `the last chunk has choices ${JSON.stringify(last.choices)}`);
  check(last.usage, 'the last chunk has no usage');
  const cost = last.usage.cost;
  check(typeof cost === 'string' && DECIMAL.test(cost), `usage.cost is ${JSON.stringify(cost)}, not a decimal string`);
  check(chunks.slice(0, -1).every((c) => c.choices.length > 0), 'a chunk before the last has no choices');
  const text = chunks.slice(0, -1).map((c) => c.choices[0]?.delta?.content || '').join('');
  checkText(text);
  return { text, cost, usage: last.usage };
}

const TEXTS = ['the quick brown fox', 'jumps over', 'the lazy dog today'];

async function embeddings() {
  // float, as asked for; the SDK's own default asks for base64 and decodes it.
  const floats = await client.embeddings.create({ model: EMBED_MODEL, input: TEXTS, encoding_format: 'float' });
  const decoded = await client.embeddings.create({ model: EMBED_MODEL, input: TEXTS });
  check(floats.data.length === 3 && floats.data.every((d, i) => d.index === i), 'data is not three vectors in order');
  check(floats.data[0].embedding.every((x) => typeof x === 'number'), 'float vectors are not numbers');
  const same = floats.data.every((d, i) => {
    const other = Array.from(decoded.data[i].embedding);
    return other.length === d.embedding.length && other.every((x, j) => x === d.embedding[j]);
  });
  check(same, 'base64-decoded vectors differ from the float ones');
  const one = await client.embeddings.create({ model: EMBED_MODEL, input: 'hello world', dimensions: 4 });
  check(one.data.length === 1 && one.data[0].embedding.length === 4, 'dimensions was not honoured');
  const tokens = await client.embeddings.create({ model: EMBED_MODEL, input: [[1, 2, 3], [4, 5]], encoding_format: 'float' });
  check(tokens.data.length === 2, 'token arrays did not give two vectors');
  const usages = [];
  for (const r of [floats, decoded, one, tokens]) {
    check(typeof r.usage.cost === 'string' && DECIMAL.test(r.usage.cost), `usage.cost is ${r.usage.cost}`);
    check(r.usage.total_tokens === r.usage.prompt_tokens, `usage is ${JSON.stringify(r.usage)}`);
    usages.push({ prompt_tokens: r.usage.prompt_tokens, cost: r.usage.cost });
  }
  return { vector: floats.data[0].embedding, usages };
}

async function embeddings_no_balance() {
  const poor = new OpenAI({ apiKey: POOR_KEY, baseURL: BASE_URL, maxRetries: 0 });
  try {
    await poor.embeddings.create({ model: EMBED_MODEL, input: 'hello' });
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === 402, `raised ${e?.constructor?.name} ${e?.status}`);
    return { status: e.status, code: e.code };
  }
  throw new Failed('a key without balance got embeddings');
}

async function models() {
  const listed = {};
  for await (const m of client.models.list()) listed[m.id] = m;
  check(listed[EMBED_MODEL] && listed[MODEL], `models are ${Object.keys(listed)}`);
  const m = await client.models.retrieve(MODEL);
  check(m.id === MODEL && m.object === 'model', `retrieved ${JSON.stringify(m)}`);
  const e = await client.models.retrieve(EMBED_MODEL);
  check(e.kind === 'embedding', `embedding model is ${JSON.stringify(e)}`);
  let missingCode;
  try {
    await client.models.retrieve('no-such-model');
    throw new Failed('an unknown model was retrieved');
  } catch (err) {
    if (err instanceof Failed) throw err;
    check(err instanceof OpenAI.NotFoundError, `raised ${err?.constructor?.name}`);
    missingCode = err.code;
  }
  const { id, object, created, owned_by, ...chat } = m;
  const { id: _i, object: _o, created: _c, owned_by: _b, ...embedding } = e;
  return { ids: Object.keys(listed).sort(), chat, embedding, missing_code: missingCode };
}

async function completions() {
  const one = await client.completions.create({ model: MODEL, prompt: 'Say this is a test', max_tokens: 40 });
  check(one.object === 'text_completion', `object is ${one.object}`);
  check(one.choices.length === 1 && one.choices[0].index === 0, 'choices are not one');
  check(typeof one.usage?.cost === 'string' && DECIMAL.test(one.usage.cost), `usage.cost is ${one.usage?.cost}`);
  const stream = await client.completions.create({
    model: MODEL, prompt: 'Say this is a test', max_tokens: 40, stream: true,
    stream_options: { include_usage: true },
  });
  const texts = [];
  const objects = new Set();
  const finish = [];
  let usage = null;
  for await (const chunk of stream) {
    objects.add(chunk.object);
    for (const ch of chunk.choices) {
      texts.push(ch.text);
      if (ch.finish_reason) finish.push(ch.finish_reason);
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check(objects.size === 1 && objects.has('text_completion'), `chunk objects are ${[...objects]}`);
  check(usage && typeof usage.cost === 'string' && DECIMAL.test(usage.cost), `stream usage is ${JSON.stringify(usage)}`);
  return {
    text: one.choices[0].text,
    finish_reason: one.choices[0].finish_reason,
    usage: { prompt_tokens: one.usage.prompt_tokens, completion_tokens: one.usage.completion_tokens, cost: one.usage.cost },
    stream_text: texts.join(''),
    stream_finish: finish,
    stream_usage: { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, cost: usage.cost },
  };
}

const SCENARIOS = {
  embeddings,
  embeddings_no_balance,
  completions,
  models,
  stream_text,
  reasoning,
  non_stream,
  abort,
  bad_key,
  stream_error,
  fetch_reader,
  stream_helper,
  include_usage,
};

const name = process.argv[2];
if (!Object.hasOwn(SCENARIOS, name)) {
  console.error(`usage: node conformance.mjs ${Object.keys(SCENARIOS).join('|')}`);
  process.exit(2);
}
try {
  const facts = await SCENARIOS[name]();
  console.log(JSON.stringify({ scenario: name, ok: true, openai: SDK_VERSION, ...facts }));
} catch (e) {
  if (e instanceof Failed) {
    console.error(`FAILED node/${name}: ${e.message}`);
  } else {
    console.error(`FAILED node/${name}: the client raised ${e?.constructor?.name}: ${e?.message}`);
    if (e?.error !== undefined) console.error(`error body: ${JSON.stringify(e.error)}`);
    if (e?.stack) console.error(e.stack);
  }
  process.exit(1);
}
