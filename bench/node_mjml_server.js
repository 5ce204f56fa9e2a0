#!/usr/bin/env node
// Baseline (c) for bench/render.py: Node.js and the `mjml` npm package, compiling the
// template's MJML on every render, as a Node renderer without a compile step would.
//
//   node bench/node_mjml_server.js --port 8001 --skeleton skeleton.json \
//        --modules ~/.cache/kairos-bench-node/node_modules
//
// The skeleton (written by bench/render.py) holds one template's parts as Kairos renders
// them for a reference reader whose first name and tier are sentinels: `mjml` is the
// reader's whole MJML document (Jinja already applied, the theme CSS in an
// <mj-style inline="inline"> so the output is styled like Kairos's), plus `amp`, `text`,
// `subject`, `preheader`. Per request this server reads Kairos's JSON body
// ({template, user_id, profile, campaign, formats}), puts the reader's first name and
// tier in place of the sentinels (HTML-escaped in the markup), compiles the MJML with
// mjml's default options, and answers Kairos's JSON shape. Products, links and the
// variant are the reference reader's for everyone: this is less per-reader work than
// Kairos does, so the ratio it gives is, if anything, flattering to Node.
//
// GET /healthz answers {"status":"ok"}. Nothing else is served. Listens on 127.0.0.1.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");

function option(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`node_mjml_server: ${name} is required`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const port = Number(option("--port"));
const skeleton = JSON.parse(fs.readFileSync(option("--skeleton"), "utf8"));
const mjml2html = require(path.join(option("--modules"), "mjml"));
const mjmlVersion = require(path.join(option("--modules"), "mjml", "package.json")).version;

const SENTINELS = skeleton.sentinels; // {first_name: "...", tier: "..."}
const SPLIT = new RegExp(`(${SENTINELS.first_name}|${SENTINELS.tier})`);

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
}

function titleCase(s) {
  return s.toLowerCase().replace(/(^|[^a-z])([a-z])/g, (m, p, c) => p + c.toUpperCase());
}

// Each part split once at start-up around the sentinels; a render joins the pieces.
function pieces(text) {
  return text == null ? null : text.split(SPLIT);
}
const parts = {
  mjml: pieces(skeleton.mjml),
  amp: pieces(skeleton.amp),
  text: pieces(skeleton.text),
  subject: pieces(skeleton.subject),
  preheader: pieces(skeleton.preheader),
};

function fill(split, values, escape) {
  if (split == null) return null;
  let out = "";
  for (const piece of split) {
    if (piece === SENTINELS.first_name) out += escape ? escapeHtml(values.first_name) : values.first_name;
    else if (piece === SENTINELS.tier) out += escape ? escapeHtml(values.tier) : values.tier;
    else out += piece;
  }
  return out;
}

function send(res, status, doc) {
  const body = Buffer.from(JSON.stringify(doc));
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": body.length });
  res.end(body);
}

function error(res, status, code, message) {
  send(res, status, { error: { code, message } });
}

async function render(doc) {
  const profile = doc.profile || {};
  const values = {
    first_name: typeof profile.first_name === "string" ? profile.first_name : "",
    tier: typeof profile.tier === "string" ? titleCase(profile.tier) : "",
  };
  const formats = Array.isArray(doc.formats) ? doc.formats : ["html", "amp", "text"];
  let html = null;
  if (formats.includes("html")) {
    const result = await mjml2html(fill(parts.mjml, values, true), {});
    html = result.html;
  }
  return {
    subject: fill(parts.subject, values, false).split(/\s+/).filter(Boolean).join(" "),
    preheader: fill(parts.preheader, values, false).split(/\s+/).filter(Boolean).join(" "),
    html,
    amp: formats.includes("amp") ? fill(parts.amp, values, true) : null,
    text: formats.includes("text") ? fill(parts.text, values, false) : null,
    segments: Array.isArray(profile.segments) ? profile.segments : [],
    variant: skeleton.variant,
    fallbacks: [],
  };
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") {
    send(res, 200, { status: "ok", mjml: mjmlVersion });
    return;
  }
  if (req.method !== "POST" || req.url !== "/v1/render") {
    error(res, 404, "not_found", "not found");
    return;
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    let doc;
    try {
      doc = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (e) {
      error(res, 400, "invalid_json", String(e));
      return;
    }
    if (doc === null || typeof doc !== "object" || typeof doc.user_id !== "string") {
      error(res, 422, "invalid", "user_id: required");
      return;
    }
    if (doc.template !== skeleton.template) {
      error(res, 404, "template_not_found", `this server only renders ${skeleton.template}`);
      return;
    }
    render(doc).then(
      (answer) => send(res, 200, answer),
      (e) => error(res, 500, "internal", String(e)),
    );
  });
});

server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1", () => {
  console.log(`node_mjml_server: mjml ${mjmlVersion}, node ${process.version}, port ${port}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
