// Drives `phasemap serve` with the official openai npm client (tests/serve/test_openai.py):
// node openai_client.cjs PORT MODE PROMPT N   (MODE: completions | chat | chat-error)
// Prints one JSON line: what the client returned, non-streaming and streaming.
const OpenAI = require('openai');
const [port, mode, prompt, n] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });

(async () => {
  const out = {};
  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);
  const model = out.models[0];
  const max_tokens = Number(n);
  if (mode === 'completions') {
    const c = await client.completions.create({ model, prompt, max_tokens });
    out.plain = { text: c.choices[0].text, finish: c.choices[0].finish_reason, ids: c.phasemap.tokens.map((t) => t.id) };
    const s = await client.completions.create({ model, prompt, max_tokens, stream: true });
    const st = { text: '', ids: [], finish: null, summary: false };
    for await (const ch of s) {
      st.text += ch.choices[0].text;
      if (ch.phasemap && ch.phasemap.token) st.ids.push(ch.phasemap.token.id);
      if (ch.choices[0].finish_reason) st.finish = ch.choices[0].finish_reason;
      if (ch.phasemap && ch.phasemap.summary) st.summary = true;
    }
    out.stream = st;
  } else if (mode === 'chat') {
    const messages = [{ role: 'user', content: prompt }];
    const c = await client.chat.completions.create({ model, messages, max_tokens });
    out.plain = { text: c.choices[0].message.content, finish: c.choices[0].finish_reason, ids: c.phasemap.tokens.map((t) => t.id) };
    const s = await client.chat.completions.create({ model, messages, max_tokens, stream: true });
    const st = { text: '', ids: [], finish: null };
    for await (const ch of s) {
      if (ch.choices[0].delta && ch.choices[0].delta.content) st.text += ch.choices[0].delta.content;
      if (ch.phasemap && ch.phasemap.token) st.ids.push(ch.phasemap.token.id);
      if (ch.choices[0].finish_reason) st.finish = ch.choices[0].finish_reason;
    }
    out.stream = st;
  } else {
    try {
      await client.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], max_tokens });
      out.error = null;
    } catch (e) {
      out.error = { status: e.status, message: e.message };
    }
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
