//! `GET /docs`: a self-contained API reference page that renders `/openapi.json` in the
//! browser. It loads nothing from the network, so it works on an offline laptop and inside
//! clusters without egress (the usual Swagger/Scalar pages pull their scripts from a CDN).

use axum::response::Html;

/// The page; it fetches `openapi.json` relative to the service root.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1rem 2rem;color:#1d2330}
h1{margin-bottom:0}.op{border:1px solid #d8dde6;border-radius:6px;margin:.6rem 0}
.op summary{cursor:pointer;padding:.5rem .8rem;display:flex;gap:.8rem;align-items:center}
.m{font-weight:700;text-transform:uppercase;min-width:4.5rem;font-family:monospace}
.get{color:#1565c0}.post{color:#2e7d32}.patch,.put{color:#ef6c00}.delete{color:#c62828}
.path{font-family:monospace}.body{padding:0 1rem 1rem}pre{background:#f5f7fa;padding:.6rem;overflow:auto;border-radius:4px}
table{border-collapse:collapse}td,th{border-bottom:1px solid #e3e7ee;padding:.2rem .6rem;text-align:left;vertical-align:top}
</style></head><body>
<h1 id="title">API reference</h1><p id="desc"></p><p><a href="openapi.json">openapi.json</a></p><div id="ops">Loading…</div>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
function resolve(spec, schema, depth) {
  if (!schema || depth > 6) return schema;
  if (schema.$ref) { const name = schema.$ref.split("/").pop(); return resolve(spec, (spec.components?.schemas || {})[name], depth + 1); }
  const out = Array.isArray(schema) ? [] : {};
  for (const [k, v] of Object.entries(schema)) out[k] = (v && typeof v === "object") ? resolve(spec, v, depth + 1) : v;
  return out;
}
function example(schema) {
  if (!schema) return null;
  if (schema.example !== undefined) return schema.example;
  if (schema.oneOf || schema.anyOf) return example((schema.oneOf || schema.anyOf)[0]);
  if (schema.allOf) return Object.assign({}, ...schema.allOf.map(example));
  const t = Array.isArray(schema.type) ? schema.type.find(x => x !== "null") : schema.type;
  if (t === "object" || schema.properties) { const o = {}; for (const [k, v] of Object.entries(schema.properties || {})) o[k] = example(v); return o; }
  if (t === "array") return [example(schema.items)];
  if (t === "integer" || t === "number") return 0;
  if (t === "boolean") return true;
  if (schema.enum) return schema.enum[0];
  return schema.format || "string";
}
fetch("openapi.json").then(r => r.json()).then(spec => {
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("desc").textContent = spec.info.description || "";
  let html = "";
  for (const [path, item] of Object.entries(spec.paths || {})) for (const [method, op] of Object.entries(item)) {
    let body = `<p>${esc(op.description || "")}</p>`;
    if (op.security) body += `<p><b>Auth:</b> bearer token</p>`;
    const params = (op.parameters || []);
    if (params.length) body += "<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>" + params.map(p => `<tr><td>${esc(p.name)}</td><td>${esc(p.in)}</td><td>${p.required ? "yes" : ""}</td><td>${esc(p.description)}</td></tr>`).join("") + "</table>";
    const req = op.requestBody?.content?.["application/json"]?.schema;
    if (req) body += `<p><b>Request body</b></p><pre>${esc(JSON.stringify(example(resolve(spec, req, 0)), null, 2))}</pre>`;
    for (const [code, resp] of Object.entries(op.responses || {})) {
      const content = resp.content || {}; const media = Object.keys(content)[0];
      body += `<p><b>${esc(code)}</b> ${esc(resp.description)}</p>`;
      if (media && content[media].schema) body += `<pre>${esc(JSON.stringify(example(resolve(spec, content[media].schema, 0)), null, 2))}</pre>`;
    }
    html += `<details class="op"><summary><span class="m ${method}">${method}</span><span class="path">${esc(path)}</span><span>${esc(op.summary || "")}</span></summary><div class="body">${body}</div></details>`;
  }
  document.getElementById("ops").innerHTML = html || "No operations.";
}).catch(e => { document.getElementById("ops").textContent = "Cannot load openapi.json: " + e; });
</script></body></html>
"#;
