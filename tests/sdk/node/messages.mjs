// Official `@anthropic-ai/sdk` Node scenarios against Switchyard's POST /v1/messages (the Node twin
// of tests/sdk/python/messages.py, same environment and scenarios: create, stream, tools, thinking,
// errors). Exit 0 on success; the last stdout line is a JSON object with the facts.
import Anthropic from "@anthropic-ai/sdk";

const env = process.env;
const baseURL = env.SWITCHYARD_BASE_URL.replace(/\/v1$/, "");
const client = new Anthropic({ baseURL, apiKey: env.SWITCHYARD_API_KEY, maxRetries: 0 });
const MODEL = env.SWITCHYARD_MODEL;
const TEXT = env.SWITCHYARD_EXPECT_TEXT;
const REASONING = env.SWITCHYARD_EXPECT_REASONING;
const TOOLS = [
  {
    name: "get_weather",
    description: "Current weather for a city",
    input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${JSON.stringify(what)}`);
}

const scenarios = {
  async create() {
    const m = await client.messages.create({
      model: MODEL,
      max_tokens: 256,
      system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
      messages: [{ role: "user", content: "Say something." }],
    });
    check(m.content[0].type === "text" && m.content[0].text === TEXT, m.content);
    check(m.stop_reason === "end_turn", m.stop_reason);
    check(Number(m.usage.cost) > 0, m.usage);
    return { text: m.content[0].text };
  },
  async stream() {
    const pieces = [];
    const s = client.messages.stream({
      model: MODEL,
      max_tokens: 256,
      messages: [{ role: "user", content: "Say something." }],
    });
    s.on("text", (t) => pieces.push(t));
    const final = await s.finalMessage();
    check(pieces.join("") === TEXT, pieces);
    check(final.content[0].text === TEXT, final.content);
    check(final.stop_reason === "end_turn" && final.usage.output_tokens > 0, final);
    return { deltas: pieces.length };
  },
  async tools() {
    const messages = [{ role: "user", content: "Weather in Paris?" }];
    const first = await client.messages
      .stream({ model: env.SWITCHYARD_TOOLS_MODEL, max_tokens: 256, tools: TOOLS, messages })
      .finalMessage();
    check(first.stop_reason === "tool_use", first);
    const calls = first.content.filter((b) => b.type === "tool_use");
    check(calls.length === 1 && typeof calls[0].input === "object", first.content);
    messages.push({ role: "assistant", content: first.content });
    messages.push({
      role: "user",
      content: [{ type: "tool_result", tool_use_id: calls[0].id, content: "sunny" }],
    });
    const second = await client.messages.create({ model: MODEL, max_tokens: 256, tools: TOOLS, messages });
    check(second.content[0].text === TEXT, second.content);
    return { tool: calls[0].name };
  },
  async thinking() {
    const final = await client.messages
      .stream({
        model: env.SWITCHYARD_REASONING_MODEL,
        max_tokens: 4096,
        thinking: { type: "enabled", budget_tokens: 2048 },
        messages: [{ role: "user", content: "Think first." }],
      })
      .finalMessage();
    check(final.content[0].type === "thinking" && final.content[0].thinking === REASONING, final.content);
    check(final.content.at(-1).text === TEXT, final.content);
    return { thinking: final.content[0].thinking };
  },
  async errors() {
    const bad = new Anthropic({ baseURL, apiKey: "sk-sy-wrong", maxRetries: 0 });
    try {
      await bad.messages.create({ model: MODEL, max_tokens: 5, messages: [{ role: "user", content: "x" }] });
      throw new Error("a wrong key was accepted");
    } catch (e) {
      check(e instanceof Anthropic.AuthenticationError, String(e));
      check(e.error.error.type === "authentication_error", e.error);
    }
    try {
      await client.messages.create({ model: "no-such-model", max_tokens: 5, messages: [{ role: "user", content: "x" }] });
      throw new Error("an unknown model was accepted");
    } catch (e) {
      check(e instanceof Anthropic.NotFoundError, String(e));
    }
    const count = await client.messages.countTokens({ model: MODEL, messages: [{ role: "user", content: "hello there" }] });
    check(count.input_tokens > 0, count);
    return { count: count.input_tokens };
  },
};

const name = process.argv[2];
const facts = await scenarios[name]();
console.log(JSON.stringify({ ...facts, ok: true, scenario: name }));
