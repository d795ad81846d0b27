// "Copy as": the playground's exact request as a curl command, a Python script and a Node script,
// against this page's own base URL, the key shown as $SWITCHYARD_API_KEY (never the real one).

const pyString = (s) => JSON.stringify(s); // a JSON string literal is a valid Python literal
const shellQuote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

/** The request body the playground sends. */
export function chatBody(model, system, user) {
  const messages = [];
  if (system.trim()) messages.push({ role: 'system', content: system });
  messages.push({ role: 'user', content: user });
  return { model, messages, stream: true, stream_options: { include_usage: true } };
}

export function baseUrl() {
  return `${window.location.origin}/v1`;
}

export function curl(body) {
  return [
    `curl -N ${baseUrl()}/chat/completions \\`,
    '  -H "Authorization: Bearer $SWITCHYARD_API_KEY" \\',
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuote(JSON.stringify(body))}`,
  ].join('\n');
}

export function python(body) {
  const messages = body.messages
    .map((m) => `        {"role": ${pyString(m.role)}, "content": ${pyString(m.content)}},`)
    .join('\n');
  return [
    'import os',
    'from openai import OpenAI',
    '',
    `client = OpenAI(base_url=${pyString(baseUrl())}, api_key=os.environ["SWITCHYARD_API_KEY"])`,
    'stream = client.chat.completions.create(',
    `    model=${pyString(body.model)},`,
    '    messages=[',
    messages,
    '    ],',
    '    stream=True,',
    '    stream_options={"include_usage": True},',
    ')',
    'for chunk in stream:',
    '    if chunk.choices and chunk.choices[0].delta.content:',
    '        print(chunk.choices[0].delta.content, end="", flush=True)',
    '    if chunk.usage:',
    '        print("\\n", chunk.usage)',
  ].join('\n');
}

export function node(body) {
  return [
    "import OpenAI from 'openai';",
    '',
    `const client = new OpenAI({ baseURL: ${JSON.stringify(baseUrl())}, apiKey: process.env.SWITCHYARD_API_KEY });`,
    `const stream = await client.chat.completions.create(${JSON.stringify(body, null, 2)});`,
    'for await (const chunk of stream) {',
    "  process.stdout.write(chunk.choices[0]?.delta?.content ?? '');",
    '  if (chunk.usage) console.log(\'\\n\', chunk.usage);',
    '}',
  ].join('\n');
}

export const SNIPPETS = { curl, python, node };
