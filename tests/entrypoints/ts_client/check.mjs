// The official TypeScript MCP client against `sdxl-mcp serve` over stdio.
// Its callTool validates structuredContent against each tool's outputSchema
// (Ajv) and throws on a mismatch; this script prints one JSON line of what it
// saw, or exits non-zero with the error.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, ...args] = JSON.parse(process.env.SDXL_MCP_TS_COMMAND);
const transport = new StdioClientTransport({
  command, args, env: JSON.parse(process.env.SDXL_MCP_TS_ENV), stderr: "ignore",
});
const client = new Client({ name: "sdxl-mcp-ts-check", version: "1.0.0" });
const long = { timeout: 600000 };

function brief(result) {
  return { isError: Boolean(result.isError), structured: result.structuredContent ?? null };
}

try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  const out = { tools: tools.map((t) => t.name) };
  out.gpu_status = brief(await client.callTool({ name: "gpu_status", arguments: {} }));
  const made = await client.callTool({
    name: "generate_image",
    arguments: { prompt: "a lighthouse at dawn", width: 256, height: 256, quality: "fast", seed: 5 },
  }, undefined, long);
  out.generate_image = brief(made);
  const jobId = made.structuredContent?.job_id;
  out.get_generation = brief(await client.callTool(
    { name: "get_generation", arguments: { job_id: jobId, wait_seconds: 0 } }, undefined, long));
  out.find_images = brief(await client.callTool({ name: "find_images", arguments: {} }));
  out.export_image = brief(await client.callTool({
    name: "export_image", arguments: { image: made.structuredContent?.image_id, preset: "thumbnail" },
  }));
  out.bad_job = brief(await client.callTool(
    { name: "cancel_generation", arguments: { job_id: "no-such-job" } }));
  const prompts = await client.listPrompts();
  out.prompts = prompts.prompts.map((p) => p.name);
  console.log(JSON.stringify(out));
  await client.close();
} catch (error) {
  console.error(String(error?.stack ?? error));
  await client.close().catch(() => {});
  process.exit(1);
}
