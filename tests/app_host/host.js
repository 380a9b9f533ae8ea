// A minimal MCP Apps host for the browser test, built on the official AppBridge.
// It connects an MCP client to the server (same origin, /mcp), finds the tool that points at a ui:// page,
// renders that page in a sandboxed iframe under the hosts' default restrictive CSP, and calls the tool.
// Bundled by esbuild at test time (tests/test_app_browser.py); the query string picks the protocol era.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  AppBridge,
  PostMessageTransport,
  getToolUiResourceUri,
  isToolVisibilityAppOnly,
} from "@modelcontextprotocol/ext-apps/app-bridge";

// What hosts apply to a view by default: inline code only, images from data: URLs, no network at all.
const CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; " +
  "font-src data:; connect-src 'none'; frame-src 'none'; base-uri 'none'; form-action 'none'";

const status = (window.host = { ready: false, era: null, modelTools: [], appTools: [], errors: [], sizes: [] });

function withCsp(html) {
  const meta = `<meta http-equiv="Content-Security-Policy" content="${CSP}">`;
  return html.includes("<head>") ? html.replace("<head>", "<head>" + meta) : meta + html;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const era = params.get("era") === "modern" ? "auto" : "legacy";
  const conversationId = params.get("conversation") || "default";
  const client = new Client(
    { name: "imagechat-test-host", version: "1.0.0" },
    {
      versionNegotiation: { mode: era },
      capabilities: { extensions: { "io.modelcontextprotocol/ui": { mimeTypes: ["text/html;profile=mcp-app"] } } },
    },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));
  status.era = client.getNegotiatedProtocolVersion ? client.getNegotiatedProtocolVersion() : era;

  const { tools } = await client.listTools();
  // What a host hands the model: everything but the app-only tools.
  status.modelTools = tools.filter((t) => !isToolVisibilityAppOnly(t)).map((t) => t.name);
  status.appTools = tools.filter((t) => isToolVisibilityAppOnly(t)).map((t) => t.name);
  const tool = tools.find((t) => !isToolVisibilityAppOnly(t) && getToolUiResourceUri(t));
  const uri = getToolUiResourceUri(tool);
  const resource = await client.readResource({ uri });
  const html = resource.contents[0].text;
  status.mimeType = resource.contents[0].mimeType;

  const iframe = document.createElement("iframe");
  iframe.id = "app";
  iframe.setAttribute("sandbox", "allow-scripts");
  iframe.style.cssText = "width: 100%; height: 600px; border: 1px solid #ccc;";
  document.getElementById("frame").append(iframe);

  const bridge = new AppBridge(
    client,
    { name: "imagechat-test-host", version: "1.0.0" },
    { serverTools: {}, serverResources: {}, logging: {} },
    { hostContext: { theme: "light", displayMode: "inline", platform: "web" } },
  );
  bridge.onsizechange = ({ height }) => {
    status.sizes.push(height);
    if (height) iframe.style.height = Math.min(Math.max(height + 4, 200), 4000) + "px";
  };
  bridge.oninitialized = async () => {
    const args = { conversation_id: conversationId };
    await bridge.sendToolInput({ arguments: args });
    const result = await client.callTool({ name: tool.name, arguments: args });
    status.toolText = result.content.map((c) => c.text || "").join("");
    await bridge.sendToolResult(result);
    status.ready = true;
  };
  // Connect first, then load the page: its ui/initialize must find the bridge listening.
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.srcdoc = withCsp(html);
}

main().catch((error) => {
  status.errors.push(String((error && error.stack) || error));
  console.error(error);
});
