// Bundles host.js (AppBridge and the MCP client from the pinned packages) for the browser test.
// Usage: node build.mjs OUTFILE
import { build } from "esbuild";

await build({
  entryPoints: [new URL("./host.js", import.meta.url).pathname],
  bundle: true,
  format: "esm",
  platform: "browser",
  outfile: process.argv[2],
  logLevel: "warning",
});
