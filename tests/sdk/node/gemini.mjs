// The official `@google/genai` Node SDK (the version Gemini CLI 0.61.0 ships) against Switchyard's
// Google API (`/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
// `:countTokens`, `GET /v1beta/models`). Scenarios: create, stream, thinking, tools, errors.
// Exit 0 on success; the last stdout line is a JSON object with the facts.
import { ApiError, GoogleGenAI, Type } from "@google/genai";

const env = process.env;
const baseUrl = env.SWITCHYARD_BASE_URL.replace(/\/v1$/, "");
const ai = new GoogleGenAI({ apiKey: env.SWITCHYARD_API_KEY, httpOptions: { baseUrl } });
const MODEL = env.SWITCHYARD_MODEL;
const TEXT = env.SWITCHYARD_EXPECT_TEXT;
const REASONING = env.SWITCHYARD_EXPECT_REASONING;
const TOOLS = [
  {
    functionDeclarations: [
      {
        name: "get_weather",
        description: "Current weather for a city",
        parameters: { type: Type.OBJECT, properties: { city: { type: Type.STRING } }, required: ["city"] },
      },
    ],
  },
];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${JSON.stringify(what)}`);
}

const scenarios = {
  async create() {
    const r = await ai.models.generateContent({
      model: MODEL,
      contents: "Say something.",
      config: { systemInstruction: "Be brief.", temperature: 0.5, maxOutputTokens: 256 },
    });
    check(r.text === TEXT, r);
    check(r.candidates[0].finishReason === "STOP", r.candidates);
    check(r.usageMetadata.promptTokenCount > 0 && r.usageMetadata.totalTokenCount > 0, r.usageMetadata);
    return { text: r.text };
  },
  async stream() {
    const pieces = [];
    let last;
    for await (const chunk of await ai.models.generateContentStream({ model: MODEL, contents: "Say something." })) {
      if (chunk.text) pieces.push(chunk.text);
      last = chunk;
    }
    check(pieces.join("") === TEXT, pieces);
    check(pieces.length > 1, "text arrives in pieces");
    check(last.candidates[0].finishReason === "STOP", last);
    check(last.usageMetadata.candidatesTokenCount > 0, last.usageMetadata);
    return { chunks: pieces.length };
  },
  async thinking() {
    const thoughts = [];
    const text = [];
    const stream = await ai.models.generateContentStream({
      model: env.SWITCHYARD_REASONING_MODEL,
      contents: "Think first.",
      config: { thinkingConfig: { includeThoughts: true, thinkingBudget: 2048 } },
    });
    for await (const chunk of stream) {
      for (const part of chunk.candidates?.[0]?.content?.parts ?? []) {
        if (part.thought) thoughts.push(part.text);
        else if (part.text) text.push(part.text);
      }
    }
    check(thoughts.join("") === REASONING, thoughts);
    check(text.join("") === TEXT, text);
    return { thoughts: thoughts.length };
  },
  async tools() {
    const contents = [{ role: "user", parts: [{ text: "Weather in Paris?" }] }];
    const calls = [];
    let modelParts = [];
    const stream = await ai.models.generateContentStream({
      model: env.SWITCHYARD_TOOLS_MODEL,
      contents,
      config: { tools: TOOLS },
    });
    for await (const chunk of stream) {
      calls.push(...(chunk.functionCalls ?? []));
      modelParts.push(...(chunk.candidates?.[0]?.content?.parts ?? []).filter((p) => p.functionCall));
    }
    check(calls.length === 1 && calls[0].name === "get_weather" && typeof calls[0].args === "object", calls);
    contents.push({ role: "model", parts: modelParts });
    contents.push({
      role: "user",
      parts: [{ functionResponse: { id: calls[0].id, name: calls[0].name, response: { output: "sunny" } } }],
    });
    const second = await ai.models.generateContent({ model: MODEL, contents, config: { tools: TOOLS } });
    check(second.text === TEXT, second);
    return { tool: calls[0].name };
  },
  async errors() {
    const bad = new GoogleGenAI({ apiKey: "sk-sy-wrong", httpOptions: { baseUrl } });
    try {
      await bad.models.generateContent({ model: MODEL, contents: "x" });
      throw new Error("a wrong key was accepted");
    } catch (e) {
      check(e instanceof ApiError && e.status === 401, String(e));
    }
    try {
      await ai.models.generateContent({ model: "no-such-model", contents: "x" });
      throw new Error("an unknown model was accepted");
    } catch (e) {
      check(e instanceof ApiError && e.status === 404, String(e));
    }
    const count = await ai.models.countTokens({ model: MODEL, contents: "hello there" });
    check(count.totalTokens > 0, count);
    const model = await ai.models.get({ model: MODEL });
    check(model.name === `models/${MODEL}`, model);
    const names = [];
    for await (const m of await ai.models.list()) names.push(m.name);
    check(names.includes(`models/${MODEL}`), names);
    return { count: count.totalTokens, models: names.length };
  },
};

const name = process.argv[2];
const facts = await scenarios[name]();
console.log(JSON.stringify({ ...facts, ok: true, scenario: name }));
