// The console's SSE parser (console/sse.js) on the awkward streams a network produces: events
// split at every byte, CRLF and CR line ends (a CRLF split between two reads), comments (keep-alives
// and the cost comment), multi-line data, an `event:` field, `id:` fields (the last one seen goes
// with every later event, as a resumable stream's reader needs) and a last event without its blank
// line. Prints one JSON line of facts.

import { SseParser } from '../../console/sse.js';
import { assert, main } from './browser.mjs';

function parseIn(pieces) {
  const p = new SseParser();
  const out = [];
  for (const piece of pieces) out.push(...p.push(piece));
  out.push(...p.end());
  return out;
}

const STREAM = ': keep-alive\r\n\r\ndata: {"a":1}\r\n\r\nid: 7\r\ndata: a\r\ndata: b\r\n\r\ndata: line one\rdata: line two\r\rid:8\ndata:no-space\n\n'
  + 'event: error\ndata: {"error":{"message":"x"}}\n\n: {"cost":"0.1"}\ndata: [DONE]\n\ndata: tail';
const EXPECTED = [
  { event: 'message', data: '{"a":1}', id: null },
  { event: 'message', data: 'a\nb', id: '7' },
  { event: 'message', data: 'line one\nline two', id: '7' },
  { event: 'message', data: 'no-space', id: '8' },
  { event: 'error', data: '{"error":{"message":"x"}}', id: '8' },
  { event: 'message', data: '[DONE]', id: '8' },
  { event: 'message', data: 'tail', id: '8' },
];

main('sse_parser', async () => {
  const whole = parseIn([STREAM]);
  assert(JSON.stringify(whole) === JSON.stringify(EXPECTED), `whole: ${JSON.stringify(whole)}`);
  // Every split into two pieces, and one character at a time, gives the same events.
  let splits = 0;
  for (let i = 0; i <= STREAM.length; i++) {
    const got = parseIn([STREAM.slice(0, i), STREAM.slice(i)]);
    assert(JSON.stringify(got) === JSON.stringify(EXPECTED), `split at ${i}: ${JSON.stringify(got)}`);
    splits++;
  }
  const bytewise = parseIn([...STREAM]);
  assert(JSON.stringify(bytewise) === JSON.stringify(EXPECTED), `one at a time: ${JSON.stringify(bytewise)}`);
  return { events: whole.length, splits };
});
