// Responses API scenarios for Switchyard with the official `openai` Node SDK: streaming with
// `responses.create({stream: true})` and the `responses.stream()` helper (whose accumulator throws on
// any event out of order or of an unknown type), a function call round trip, a reasoning model,
// `previous_response_id` chaining, `max_output_tokens`, and the stored responses'
// `inputItems.list` (paginated) and `delete`.
// Usage: node responses.mjs SCENARIO, with SWITCHYARD_BASE_URL (http://HOST:PORT/v1), SWITCHYARD_API_KEY
// and the models SWITCHYARD_MODEL (plain answer), SWITCHYARD_REASONING_MODEL (thinks first) and
// SWITCHYARD_TOOLS_MODEL (calls a function) set; SWITCHYARD_EXPECT_TEXT and SWITCHYARD_EXPECT_REASONING,
// when set, are the exact texts the mock produces.
// Exit 0 on success; otherwise a message on stderr and a non-zero exit. The last stdout line is a JSON
// object with the facts the Rust test checks (crates/gateway/tests/integration/responses_sdk.rs).

import OpenAI from 'openai';
import { VERSION as SDK_VERSION } from 'openai/version';

const BASE_URL = process.env.SWITCHYARD_BASE_URL;
const API_KEY = process.env.SWITCHYARD_API_KEY;
const MODEL = process.env.SWITCHYARD_MODEL ?? 'm';
const REASONING_MODEL = process.env.SWITCHYARD_REASONING_MODEL ?? 'm-think';
const TOOLS_MODEL = process.env.SWITCHYARD_TOOLS_MODEL ?? 'm-tools';
const EXPECT_TEXT = process.env.SWITCHYARD_EXPECT_TEXT;
const EXPECT_REASONING = process.env.SWITCHYARD_EXPECT_REASONING;

const TOOLS = [
  {
    type: 'function',
    name: 'get_weather',
    description: 'Get the current weather in a city.',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
    strict: false,
  },
];

class Failed extends Error {}

function check(condition, message) {
  if (!condition) throw new Failed(message);
}

function checkText(text) {
  check(text, 'no output text was received');
  if (EXPECT_TEXT !== undefined) {
    check(text === EXPECT_TEXT, `output text ${JSON.stringify(text)} !== expected ${JSON.stringify(EXPECT_TEXT)}`);
  }
}

if (!BASE_URL || !API_KEY) {
  console.error('SWITCHYARD_BASE_URL and SWITCHYARD_API_KEY must be set');
  process.exit(2);
}

const client = new OpenAI({ apiKey: API_KEY, baseURL: BASE_URL, maxRetries: 0 });

// TokenLab's recommended pattern: iterate the raw events, write the text deltas.
async function create_stream() {
  const stream = await client.responses.create({ model: MODEL, input: 'Write a short poem.', stream: true });
  const types = [];
  const seqs = [];
  let text = '';
  let final;
  for await (const event of stream) {
    types.push(event.type);
    seqs.push(event.sequence_number);
    if (event.type === 'response.output_text.delta') {
      process.stdout.write(event.delta);
      text += event.delta;
    } else if (event.type === 'response.completed') {
      final = event.response;
    }
  }
  process.stdout.write('\n');
  checkText(text);
  check(types[0] === 'response.created', `first event is ${types[0]}`);
  check(types.at(-1) === 'response.completed', `last event is ${types.at(-1)}`);
  check(seqs.every((s, i) => s === i), `sequence numbers are ${JSON.stringify(seqs)}`);
  check(final?.usage?.output_tokens > 0, 'response.completed has no usage');
  return { text, events: types.length, id: final.id, status: final.status };
}

async function stream_helper() {
  const stream = client.responses.stream({ model: MODEL, input: 'Write a short poem.', instructions: 'You are a poet.' });
  let text = '';
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  const final = await stream.finalResponse();
  checkText(text);
  check(final.output_text === text, `final output_text ${JSON.stringify(final.output_text)} !== streamed text`);
  check(final.status === 'completed', `status is ${final.status}`);
  check(final.instructions === 'You are a poet.', `instructions echo is ${JSON.stringify(final.instructions)}`);
  return { text, id: final.id, usage: final.usage };
}

// The documented round trip: the model calls a function, the caller runs it and sends the
// conversation back with a function_call_output item, the model answers.
async function function_call() {
  const conversation = [{ role: 'user', content: 'What is the weather like in Paris today?' }];
  const stream = client.responses.stream({ model: TOOLS_MODEL, input: conversation, tools: TOOLS });
  let argDeltas = '';
  for await (const event of stream) {
    if (event.type === 'response.function_call_arguments.delta') argDeltas += event.delta;
  }
  const first = await stream.finalResponse();
  const calls = first.output.filter((item) => item.type === 'function_call');
  check(calls.length === 1, `expected one function call, got ${JSON.stringify(first.output.map((i) => i.type))}`);
  const call = calls[0];
  check(call.name === 'get_weather', `called ${call.name}`);
  check(argDeltas === call.arguments, 'argument deltas do not add up to the arguments');
  const args = JSON.parse(call.arguments);
  check(typeof args.city === 'string', `arguments ${call.arguments}`);
  conversation.push(...first.output);
  conversation.push({ type: 'function_call_output', call_id: call.call_id, output: JSON.stringify({ temp_c: 21 }) });
  const answer = await client.responses.create({ model: MODEL, input: conversation, tools: TOOLS, store: false });
  checkText(answer.output_text);
  const chained = await client.responses.create({
    model: MODEL,
    previous_response_id: first.id,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: '21 C' }],
  });
  checkText(chained.output_text);
  return { text: answer.output_text, call_id: call.call_id, arguments: call.arguments };
}

async function reasoning() {
  const stream = client.responses.stream({
    model: REASONING_MODEL,
    input: 'Prove that sqrt(2) is irrational.',
    reasoning: { effort: 'low' },
  });
  let thinking = '';
  let text = '';
  let order = '';
  for await (const event of stream) {
    if (event.type === 'response.reasoning_summary_text.delta') {
      thinking += event.delta;
      order += 'r';
    } else if (event.type === 'response.output_text.delta') {
      text += event.delta;
      order += 'c';
    }
  }
  const final = await stream.finalResponse();
  check(thinking, 'no reasoning summary was streamed');
  if (EXPECT_REASONING !== undefined) {
    check(thinking === EXPECT_REASONING, `reasoning ${JSON.stringify(thinking)} !== ${JSON.stringify(EXPECT_REASONING)}`);
  }
  checkText(text);
  check(!order.slice(order.indexOf('c')).includes('r'), `reasoning after the answer: ${order}`);
  check(final.output[0].type === 'reasoning', `first output item is ${final.output[0].type}`);
  const summary = final.output[0].summary.map((s) => s.text).join('');
  check(summary === thinking, `final summary ${JSON.stringify(summary)} !== streamed reasoning`);
  return { reasoning: thinking, text };
}

async function chain() {
  const first = await client.responses.create({ model: MODEL, input: 'My name is Ada.', metadata: { turn: '1' } });
  checkText(first.output_text);
  const second = await client.responses.create({ model: MODEL, input: 'What is my name?', previous_response_id: first.id });
  checkText(second.output_text);
  check(second.previous_response_id === first.id, 'previous_response_id is not echoed');
  const stream = client.responses.stream({ model: MODEL, input: 'And again?', previous_response_id: second.id });
  let text = '';
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  const third = await stream.finalResponse();
  checkText(text);
  const fetched = await client.responses.retrieve(first.id);
  check(fetched.id === first.id && fetched.output_text === first.output_text, 'retrieve differs');
  check(fetched.metadata?.turn === '1', `metadata is ${JSON.stringify(fetched.metadata)}`);
  return { ids: [first.id, second.id, third.id], text };
}

async function incomplete() {
  const stream = await client.responses.create({
    model: MODEL,
    input: 'Write a long essay.',
    max_output_tokens: 3,
    stream: true,
  });
  let last;
  for await (const event of stream) last = event;
  check(last.type === 'response.incomplete', `last event is ${last.type}`);
  const reason = last.response.incomplete_details?.reason;
  check(reason === 'max_output_tokens', `incomplete reason is ${reason}`);
  return { status: last.response.status };
}

const INPUT = [
  { role: 'developer', content: 'Answer briefly.' },
  { role: 'user', content: 'first question' },
  { role: 'assistant', content: 'first answer' },
  { role: 'user', content: 'second question' },
];

async function input_items() {
  const r = await client.responses.create({ model: MODEL, input: INPUT });
  checkText(r.output_text);
  // One item a page: the SDK follows `after` itself until `has_more` is false.
  const newestFirst = [];
  for await (const item of client.responses.inputItems.list(r.id, { limit: 1 })) {
    newestFirst.push(item.content[0].text);
  }
  const want = INPUT.map((m) => m.content);
  check(JSON.stringify(newestFirst) === JSON.stringify([...want].reverse()), `desc items are ${newestFirst}`);
  const page = await client.responses.inputItems.list(r.id, { order: 'asc', limit: 2 });
  check(page.has_more === true, 'the first page of two says it is the last');
  check(JSON.stringify(page.data.map((i) => i.content[0].text)) === JSON.stringify(want.slice(0, 2)), 'asc page differs');
  const ids = [];
  const roles = [];
  for await (const item of client.responses.inputItems.list(r.id, { order: 'asc' })) {
    ids.push(item.id);
    roles.push(item.role);
  }
  check(new Set(ids).size === 4 && ids.every(Boolean), `item ids are ${ids}`);
  return { items: newestFirst, roles, ids };
}

async function expectNotFound(promise, what) {
  try {
    await promise;
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError, `${what}: ${e?.constructor?.name} ${e?.message}`);
    return e;
  }
  throw new Failed(`${what} succeeded`);
}

async function delete_() {
  const r = await client.responses.create({ model: MODEL, input: 'Remember me.' });
  check((await client.responses.retrieve(r.id)).id === r.id, 'the new response cannot be retrieved');
  await client.responses.delete(r.id);
  await expectNotFound(client.responses.retrieve(r.id), 'retrieving a deleted response');
  const e = await expectNotFound(
    client.responses.create({ model: MODEL, input: 'Still there?', previous_response_id: r.id }),
    'continuing a deleted response',
  );
  await expectNotFound(client.responses.delete(r.id), 'deleting a deleted response');
  return { deleted: r.id, previous_code: e.code ?? null };
}

const SLOW_MODEL = process.env.SWITCHYARD_SLOW_MODEL ?? 'm-slow';
const LONG_MODEL = process.env.SWITCHYARD_LONG_MODEL ?? 'm-long';
const EXPECT_SLOW_TEXT = process.env.SWITCHYARD_EXPECT_SLOW_TEXT;

// A background response streamed; the connection dropped after a few events; the rest read with
// retrieve(id, {stream: true, starting_after}): exactly the remaining events.
async function background() {
  const stream = await client.responses.create({ model: SLOW_MODEL, input: 'Write a short poem.', stream: true, background: true });
  const seen = [];
  for await (const event of stream) {
    seen.push(event);
    if (seen.length >= 4) break;
  }
  stream.controller.abort();
  const id = seen[0].response.id;
  check(seen[0].response.background === true, 'the response does not say it is in the background');
  const last = seen.at(-1).sequence_number;
  const rest = [];
  for await (const event of await client.responses.retrieve(id, { stream: true, starting_after: last })) rest.push(event);
  const seqs = [...seen, ...rest].map((e) => e.sequence_number);
  check(seqs.every((s, i) => s === i), `sequence numbers are ${seqs}`);
  const text = [...seen, ...rest].filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  check(text, 'no output text was received');
  if (EXPECT_SLOW_TEXT !== undefined) check(text === EXPECT_SLOW_TEXT, `output text ${JSON.stringify(text)} != expected ${JSON.stringify(EXPECT_SLOW_TEXT)}`);
  check(rest.at(-1).type === 'response.completed', `the last event is ${rest.at(-1).type}`);
  const polled = await client.responses.retrieve(id);
  check(polled.status === 'completed', `status after the end is ${polled.status}`);
  const stored = polled.output.flatMap((o) => o.content ?? []).filter((c) => c.type === 'output_text').map((c) => c.text).join('');
  check(stored === text, 'the stored response lacks the text');
  return { id, events: seqs.length, resumed_after: last, text };
}

// A background response created without streaming, polled while it runs, then cancelled.
async function background_cancel() {
  const created = await client.responses.create({ model: LONG_MODEL, input: 'Write a long poem.', background: true });
  check(['queued', 'in_progress'].includes(created.status), `created as ${created.status}`);
  // Polled until it runs, as a client waiting on it would.
  const deadline = Date.now() + 20000;
  let polled = await client.responses.retrieve(created.id);
  while (polled.status === 'queued' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    polled = await client.responses.retrieve(created.id);
  }
  check(polled.status === 'in_progress', `polled as ${polled.status}`);
  const cancelled = await client.responses.cancel(created.id);
  check(cancelled.status === 'cancelled', `cancelled as ${cancelled.status}`);
  const after = await client.responses.retrieve(created.id);
  check(after.status === 'cancelled', `after the cancel it is ${after.status}`);
  return { id: created.id, status: after.status };
}

const SCENARIOS = { create_stream, stream_helper, function_call, reasoning, chain, incomplete, input_items, delete: delete_, background, background_cancel };

const name = process.argv[2];
if (!Object.hasOwn(SCENARIOS, name)) {
  console.error(`usage: node responses.mjs ${Object.keys(SCENARIOS).join('|')}`);
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
