// Drives fksteer serve with the official openai client, as a user's program would:
// node openai-client.mjs BASE_URL [API_KEY]. Prints the images it got as JSON on stdout.
import OpenAI from "openai";

const [base, key] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: key || "unused", maxRetries: 0 });
const models = await client.models.list();
const res = await client.images.generate({
  model: "glyphs",
  prompt: 'a red "A"',
  n: 2,
  size: "32x32",
  response_format: "b64_json",
  // fksteer's own settings, sent in the body as the SDK sends any extra parameter.
  fksteer: { steps: 6, method: "fk", particles: 3, reward: "color:target=#cc2222", seed: 4 },
});
let refused = null;
try {
  await client.images.generate({ model: "glyphs", prompt: "x", size: "big" });
} catch (e) {
  refused = { status: e.status, param: e.param ?? e.error?.param ?? null, type: e.type ?? e.error?.type ?? null };
}
console.log(JSON.stringify({
  models: models.data.map((m) => m.id),
  images: res.data.map((d) => d.b64_json),
  refused,
}));
