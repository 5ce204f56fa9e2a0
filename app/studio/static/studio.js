// The designer's studio: plain JavaScript, no framework, no build step.
//
// The page calls the same /v1/... routes a script would, with its session cookie and
// the CSRF token of <meta name="kairos-csrf">. It previews the chosen template as the
// chosen reader, repaints on every `change` of /designer/events, and keeps the last
// good render in the frames while a file does not compile.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  // The parts of a table an element cannot be put inside of as its first child.
  const TABLE_PARTS = new Set(["TABLE", "TBODY", "THEAD", "TFOOT", "TR"]);
  // Fields of POST /v1/preview a server may not know yet: dropped when it says so.
  const OPTIONAL_FIELDS = ["annotate", "validate_amp", "overrides"];
  const ANNOTATIONS = `
[data-kairos-block]:hover { outline: 1px dashed #2563eb; outline-offset: -1px; }
[data-kairos-fallback] { position: relative; outline: 3px dashed #c2410c !important;
  outline-offset: -3px; }
.kairos-fallback-badge { position: absolute; top: 0; left: 0; z-index: 10;
  background: #c2410c; color: #fff; font: 600 12px/1.6 system-ui, sans-serif;
  padding: 0 6px; border-radius: 0 0 4px 0; }
.kairos-fallback-badge.kairos-before { position: static; display: inline-block; }
`;

  if ($("login")) {
    signIn();
    return;
  }

  const csrf = document.querySelector('meta[name="kairos-csrf"]').content;
  const ampSender = document.querySelector('meta[name="kairos-amp-sender"]').content;
  const root = document.documentElement;
  const state = {
    templates: new Map(),
    blocks: null,
    version: null,
    started: false,
    painted: false,
    running: false,
    again: false,
    unsupported: new Set(),
    eventErrors: [],
  };

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { "X-Kairos-CSRF": csrf } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { status: 0, ok: false, doc: { error: { code: "offline", message: String(err) } } };
    }
    let doc = null;
    try {
      doc = await response.json();
    } catch (_) {
      doc = null;
    }
    return { status: response.status, ok: response.ok, doc };
  }

  function errorOf(answer) {
    if (answer.status === 401) {
      return { code: "signed_out", message: "The studio session has ended: reload the page to sign in again." };
    }
    const error = answer.doc && answer.doc.error;
    return error || { code: "http_" + answer.status, message: "the server answered " + answer.status };
  }

  function say(text) {
    $("status").textContent = text;
  }

  // --- what to preview --------------------------------------------------------------

  function readerFields(body) {
    const kind = $("reader-kind").value;
    if (kind === "sample") {
      if ($("sample").value) body.sample = $("sample").value;
    } else if (kind === "stored") {
      body.user_id = $("user-id").value.trim();
      if (!body.user_id) return null; // nothing to show until an id is typed
    } else {
      const profile = parsedProfile();
      if (profile === null) return null;
      body.profile = profile;
    }
    return body;
  }

  function parsedProfile() {
    const error = $("profile-json-error");
    let profile;
    try {
      profile = JSON.parse($("profile-json").value);
    } catch (err) {
      error.textContent = "Not JSON: " + err.message;
      error.hidden = false;
      return null;
    }
    if (profile === null || typeof profile !== "object" || Array.isArray(profile)) {
      error.textContent = "The profile must be a JSON object.";
      error.hidden = false;
      return null;
    }
    error.hidden = true;
    return profile;
  }

  function overrides() {
    const found = {};
    if ($("variant").value) found.variant = $("variant").value;
    if ($("segment").value) found.segment = $("segment").value;
    const consent = {};
    for (const select of document.querySelectorAll("[data-consent]")) {
      if (select.value) consent[select.dataset.consent] = select.value === "true";
    }
    if (Object.keys(consent).length) found.consent = consent;
    return found;
  }

  function previewBody() {
    const body = {
      template: $("template").value,
      formats: ["html", "amp", "text"],
      annotate: true,
      validate_amp: true,
    };
    const found = overrides();
    if (Object.keys(found).length) body.overrides = found;
    return readerFields(body);
  }

  async function preview(body) {
    for (;;) {
      const sent = { ...body };
      for (const field of state.unsupported) delete sent[field];
      const answer = await api("POST", "/v1/preview", sent);
      const error = answer.doc && answer.doc.error;
      // A server without the studio's preview fields names the first it does not know.
      if (answer.status === 422 && error && OPTIONAL_FIELDS.includes(error.field) &&
          error.field in sent) {
        state.unsupported.add(error.field);
        continue;
      }
      return answer;
    }
  }

  // --- painting ---------------------------------------------------------------------

  function darkRules(doc) {
    let rules = "";
    for (const style of doc.querySelectorAll("style")) {
      const css = style.textContent;
      const media = /@media[^{]*prefers-color-scheme\s*:\s*dark[^{]*\{/gi;
      let match;
      while ((match = media.exec(css))) {
        let depth = 1;
        let i = media.lastIndex;
        for (; i < css.length && depth; i++) {
          if (css[i] === "{") depth++;
          else if (css[i] === "}") depth--;
        }
        rules += css.slice(media.lastIndex, i - 1) + "\n";
        media.lastIndex = i;
      }
    }
    return rules;
  }

  // The email as the frames show it: blocks named on hover, fallbacks outlined with a
  // badge naming the reason, and in dark mode its dark rules applied unconditionally.
  function decorate(html, { dark = false, script = null } = {}) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    for (const el of doc.querySelectorAll("[data-kairos-block]")) {
      const file = el.getAttribute("data-kairos-file");
      el.setAttribute("title", el.getAttribute("data-kairos-block") + (file ? " · " + file : ""));
    }
    for (const el of doc.querySelectorAll("[data-kairos-fallback]")) {
      const badge = doc.createElement("span");
      badge.className = "kairos-fallback-badge";
      badge.setAttribute("data-kairos-badge", el.getAttribute("data-kairos-block") || "");
      badge.textContent =
        "fallback: " + el.getAttribute("data-kairos-fallback") + " · " +
        (el.getAttribute("data-kairos-block") || "");
      if (TABLE_PARTS.has(el.tagName)) {
        badge.classList.add("kairos-before");
        el.parentNode.insertBefore(badge, el);
      } else {
        el.prepend(badge);
      }
    }
    const style = doc.createElement("style");
    style.setAttribute("data-kairos-studio", "annotations");
    style.textContent = ANNOTATIONS;
    doc.head.append(style);
    if (dark) {
      const darkStyle = doc.createElement("style");
      darkStyle.setAttribute("data-kairos-studio", "dark");
      darkStyle.textContent = ":root { color-scheme: dark; }\n" + darkRules(doc);
      doc.head.append(darkStyle);
    }
    if (script) {
      const tag = doc.createElement("script");
      tag.src = script;
      // A sender this server's AMP allow-list accepts, for the frame's feed requests.
      tag.setAttribute("data-sender", ampSender);
      doc.head.append(tag);
    }
    return "<!doctype html>\n" + doc.documentElement.outerHTML;
  }

  // A frame as tall as its email (and again when its images come in), so the email
  // scrolls with the page rather than inside a box.
  function fitHeight(frame) {
    let doc;
    try {
      doc = frame.contentDocument;
    } catch (_) {
      return;
    }
    if (!doc || !doc.body) return;
    const fit = () => {
      const height = Math.max(doc.documentElement.scrollHeight, doc.body.scrollHeight);
      // Emails measure in fractions of a pixel: a little slack keeps the scrollbar away,
      // and changes within it are ignored (an email as tall as its window would grow).
      const target = Math.max(200, Math.ceil(height) + 4);
      if (Math.abs(target - (parseFloat(frame.style.height) || 0)) > 4) {
        frame.style.height = target + "px";
      }
    };
    fit();
    if (window.ResizeObserver) new ResizeObserver(fit).observe(doc.body);
  }

  function setFrame(frame, html) {
    frame.onload = () => fitHeight(frame);
    frame.srcdoc = html;
  }

  function paintFrames() {
    const result = state.lastGood;
    if (!result) return;
    const dark = $("dark").checked;
    const html = result.html ? decorate(result.html, { dark }) : "<p>No HTML part.</p>";
    setFrame($("frame-desktop"), html);
    setFrame($("frame-mobile"), html);
    const amp = result.amp
      ? decorate(result.amp, { script: "/designer/static/amp-frame.js" })
      : "<p>" + escapeText((result.warnings || []).join("; ") || "No AMP part.") + "</p>";
    setFrame($("frame-amp"), amp);
  }

  function escapeText(text) {
    const span = document.createElement("span");
    span.textContent = text;
    return span.innerHTML;
  }

  function paintResult(result) {
    state.lastGood = result;
    paintFrames();
    $("text").textContent = result.text || "";
    const inbox = $("inbox");
    inbox.replaceChildren();
    const subject = document.createElement("strong");
    subject.textContent = result.subject || "";
    const preheader = document.createElement("span");
    preheader.textContent = result.preheader ? " · " + result.preheader : "";
    inbox.append(subject, preheader);
    const diagnostics = result.diagnostics || {};
    const fallbacks = diagnostics.fallbacks || result.fallbacks || [];
    const list = $("fallbacks");
    list.replaceChildren();
    for (const fallback of fallbacks) {
      const item = document.createElement("li");
      item.textContent =
        "Fell back: " + (fallback.block || "?") + " · " + (fallback.reason || "?") +
        (fallback.file ? " · " + fallback.file : "");
      list.append(item);
    }
    const amp = diagnostics.amp || { status: result.amp ? "unavailable" : "skipped", errors: [] };
    const verdict = $("amp-verdict");
    verdict.textContent = amp.status;
    verdict.dataset.status = amp.status;
    const errors = $("amp-errors");
    errors.replaceChildren();
    for (const error of amp.errors || []) {
      const item = document.createElement("li");
      item.textContent = `line ${error.line}, column ${error.col}: ${error.message} (${error.code})`;
      errors.append(item);
    }
  }

  function showErrors(errors) {
    const panel = $("errors");
    panel.replaceChildren();
    panel.hidden = errors.length === 0;
    for (const error of errors) {
      const entry = document.createElement("article");
      const where = document.createElement("h2");
      where.className = "where";
      where.textContent = error.file
        ? error.file + (error.line ? ":" + error.line : "")
        : error.code || "error";
      const message = document.createElement("p");
      message.className = "message";
      message.textContent = error.message || "";
      entry.append(where, message);
      if (error.snippet) {
        const snippet = document.createElement("pre");
        snippet.className = "snippet";
        snippet.textContent = error.snippet;
        entry.append(snippet);
      }
      panel.append(entry);
    }
  }

  // One preview at a time; whatever asks for one meanwhile gets one more after it.
  async function render() {
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    try {
      do {
        state.again = false;
        await renderOnce();
      } while (state.again);
    } finally {
      state.running = false;
    }
  }

  async function renderOnce() {
    const version = state.version;
    const body = previewBody();
    if (body === null) return;
    say("Rendering…");
    const answer = await preview(body);
    const shown = String(version === null ? "none" : version);
    if (answer.ok) {
      paintResult(answer.doc);
      showErrors(state.eventErrors);
      delete root.dataset.errorVersion;
      say("Rendered" + (version === null ? "" : " · version " + version));
    } else {
      showErrors([errorOf(answer)]);
      root.dataset.errorVersion = shown;
      say(state.lastGood ? "Error: the frames show the last good render" : "Error");
    }
    state.painted = true;
    root.dataset.renderedVersion = shown;
  }

  // --- templates, segments, blocks --------------------------------------------------

  function fillSelect(select, values, keepFirst) {
    const current = select.value;
    const first = keepFirst ? select.options[0] : null;
    select.replaceChildren(...(first ? [first] : []));
    for (const value of values) {
      const option = document.createElement("option");
      option.value = option.textContent = value;
      select.append(option);
    }
    if (values.includes(current) || (keepFirst && current === "")) select.value = current;
  }

  async function loadTemplates() {
    const answer = await api("GET", "/v1/templates");
    if (!answer.ok) {
      showErrors([errorOf(answer)]);
      return;
    }
    state.templates = new Map(answer.doc.templates.map((t) => [t.name, t]));
    fillSelect($("template"), [...state.templates.keys()], false);
    templateChosen();
  }

  function templateChosen() {
    const template = state.templates.get($("template").value) || {};
    // A template that does not compile lists no samples nor variants: keep those chosen
    // (a save that breaks it, then one that mends it, must not change the reader).
    if (template.ok === false) return;
    fillSelect($("sample"), template.samples || [], false);
    fillSelect($("variant"), Object.keys(template.variants || {}), true);
  }

  async function loadSegments() {
    const answer = await api("GET", "/v1/segments");
    if (answer.ok) fillSelect($("segment"), answer.doc.segments.map((s) => s.name), true);
  }

  async function loadBlocks() {
    const answer = await api("GET", "/v1/blocks");
    state.blocks = answer.ok ? answer.doc.blocks : null;
  }

  async function paintGallery() {
    const items = $("gallery-items");
    if (!$("gallery").open) return;
    await loadBlocks();
    if (state.blocks === null) {
      items.textContent = "The block gallery needs GET /v1/blocks, which this server does not answer.";
      return;
    }
    items.replaceChildren();
    for (const block of state.blocks) {
      const figure = document.createElement("figure");
      figure.className = "gallery-block";
      figure.dataset.block = block.name;
      const caption = document.createElement("figcaption");
      caption.textContent = block.name + (block.description ? " · " + block.description : "");
      figure.append(caption);
      items.append(figure);
      const modes = block.has_fallback ? [false, true] : [false];
      for (const fallback of modes) {
        const body = { block: block.name, formats: ["html"], annotate: true };
        if (block.samples && block.samples.length) body.sample = block.samples[0];
        if (fallback) body.fallback = true;
        const answer = await preview(body);
        const frame = document.createElement("iframe");
        frame.className = "gallery-frame";
        frame.title = block.name + (fallback ? " (fallback)" : "");
        frame.dataset.mode = fallback ? "fallback" : "main";
        frame.setAttribute("sandbox", "allow-same-origin");
        figure.append(frame);
        if (answer.ok && answer.doc.html) {
          setFrame(frame, decorate(answer.doc.html, { dark: $("dark").checked }));
        } else {
          const error = errorOf(answer);
          frame.srcdoc = "<p>" + escapeText(error.message || error.code) + "</p>";
        }
      }
    }
  }

  // --- live reload ------------------------------------------------------------------

  function listen() {
    if (!window.EventSource) {
      firstPaint();
      return;
    }
    const events = new EventSource("/designer/events");
    // Without the events route (or before its hello), paint anyway.
    const early = setTimeout(firstPaint, 1500);
    events.addEventListener("hello", (event) => {
      const previous = state.version;
      state.version = JSON.parse(event.data).version;
      clearTimeout(early);
      if (!state.started) firstPaint();
      // Reconnected to a server that changed meanwhile (restarted): paint again.
      else if (previous !== null && previous !== state.version) render();
      else if (state.painted && !state.running) root.dataset.renderedVersion = String(state.version);
      else render();
    });
    events.addEventListener("change", async (event) => {
      const change = JSON.parse(event.data);
      state.version = change.version;
      state.eventErrors = change.errors || [];
      say("Changed: " + (change.files || []).join(", "));
      if ((change.templates || []).length) await loadTemplates();
      render();
      paintGallery();
    });
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) {
        clearTimeout(early);
        firstPaint();
      }
    };
  }

  function firstPaint() {
    if (state.started) return;
    state.started = true;
    render();
  }

  // --- send a test, sign out --------------------------------------------------------

  async function sendTest() {
    const result = $("send-result");
    const body = previewBody();
    if (body === null) {
      result.textContent = "Choose a reader first.";
      return;
    }
    body.to = $("send-to").value.trim();
    result.textContent = "Sending…";
    const answer = await api("POST", "/v1/preview/send", body);
    if (answer.ok) {
      result.textContent = "Sent to " + answer.doc.to + " · " + (answer.doc.message_id || "");
    } else if (answer.status === 404 || answer.status === 405) {
      result.textContent = "This server cannot send tests (no POST /v1/preview/send).";
    } else {
      const error = errorOf(answer);
      result.textContent = "Not sent: " + (error.message || error.code);
    }
    result.dataset.code = answer.ok ? "sent" : errorOf(answer).code;
  }

  async function signOut() {
    await api("POST", "/designer/logout");
    window.location.reload();
  }

  // --- wiring -----------------------------------------------------------------------

  function showReaderKind() {
    const kind = $("reader-kind").value;
    for (const part of document.querySelectorAll("[data-reader]")) {
      part.hidden = part.dataset.reader !== kind;
    }
  }

  function debounced(fn, ms) {
    let timer = null;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  $("template").addEventListener("change", () => {
    templateChosen();
    render();
  });
  $("reader-kind").addEventListener("change", () => {
    showReaderKind();
    render();
  });
  for (const id of ["sample", "variant", "segment"]) $(id).addEventListener("change", render);
  for (const select of document.querySelectorAll("[data-consent]")) {
    select.addEventListener("change", render);
  }
  $("user-id").addEventListener("input", debounced(render, 400));
  $("profile-json").addEventListener("input", debounced(render, 300));
  $("dark").addEventListener("change", () => {
    paintFrames();
    paintGallery();
  });
  $("gallery").addEventListener("toggle", paintGallery);
  $("send").addEventListener("click", sendTest);
  $("logout").addEventListener("click", signOut);

  showReaderKind();
  Promise.all([loadTemplates(), loadSegments()]).then(listen);

  // --- the login form ---------------------------------------------------------------

  function signIn() {
    $("login").addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = $("login-error");
      const response = await fetch("/designer/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key: $("login-key").value }),
      });
      if (response.ok) {
        window.location.reload();
        return;
      }
      error.textContent = response.status === 401 ? "That is not an API key of this server." :
        "Sign-in failed (" + response.status + ").";
      error.hidden = false;
    });
  }
})();
