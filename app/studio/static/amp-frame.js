// The studio's AMP frame, made live without the AMP runtime (no CDN: Kairos serves
// everything). Runs inside the frame's document, the preview's AMP part, and does what
// an AMP email client would do with the parts Kairos's blocks use: amp-img becomes an
// img, every amp-list fetches its feed (credentials, AMP-Email-Sender) and renders its
// amp-mustache template, amp-carousel and amp-accordion are shown statically, amp-bind
// and [on] stay inert. Then <html data-amp-ready="1">.
// No eval, no inline script, no Function: it runs under the studio's CSP.
"use strict";

(function () {
  // The sender a mail client would name; the page may set it on this script's tag.
  const SENDER = (document.currentScript && document.currentScript.dataset.sender) ||
    "studio@kairos.invalid";
  // The open pixel is left unloaded: a preview is not an open.
  const PIXEL_PATH = "/v1/px/";
  const ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    "`": "&#96;", "=": "&#61;"};
  // What AMP keeps of triple-mustache HTML: formatting, and links.
  const FORMATTING = new Set(["a", "b", "br", "code", "del", "div", "em", "i", "ins", "li",
    "mark", "ol", "p", "q", "s", "small", "span", "strong", "sub", "sup", "u", "ul"]);
  const DROPPED = new Set(["script", "style", "template", "iframe", "object", "embed",
    "noscript", "svg", "math", "form", "textarea", "select"]);
  // Never in what a template renders, whatever its data.
  const SCRIPTING = new Set(["script", "iframe", "frame", "object", "embed", "base"]);
  const URL_ATTRIBUTES = ["href", "src", "action", "formaction", "xlink:href"];
  const UNSAFE_URL = /^(?:javascript|vbscript|data):/i;

  // --- amp-mustache: {{var}} {{{var}}} {{&var}} {{#s}} {{^s}} {{/s}} {{!c}} {{.}} a.b ---

  const TAG = /\{\{\{\s*([^{}]+?)\s*\}\}\}|\{\{\s*([#^/&!]?)\s*([^{}]*?)\s*\}\}/g;

  function parse(source) {
    const root = {children: []};
    const open = [root];
    let at = 0;
    for (const match of source.matchAll(TAG)) {
      const top = open[open.length - 1];
      top.children.push(source.slice(at, match.index));
      at = match.index + match[0].length;
      const [, triple, sigil, name] = match;
      if (triple !== undefined) {
        top.children.push({name: triple, raw: true});
      } else if (sigil === "#" || sigil === "^") {
        const section = {name, inverted: sigil === "^", children: []};
        top.children.push(section);
        open.push(section);
      } else if (sigil === "/") {
        if (open.length === 1 || top.name !== name) throw new Error(`unexpected {{/${name}}}`);
        open.pop();
      } else if (sigil !== "!") {
        top.children.push({name, raw: sigil === "&"});
      }
    }
    if (open.length > 1) throw new Error(`unclosed {{#${open[open.length - 1].name}}}`);
    root.children.push(source.slice(at));
    return root.children;
  }

  function own(value, key) {
    return value !== null && typeof value === "object" &&
      Object.prototype.hasOwnProperty.call(value, key);
  }

  function lookup(name, stack) {
    if (name === ".") return stack[stack.length - 1];
    const [first, ...rest] = name.split(".");
    let i = stack.length - 1;
    while (i >= 0 && !own(stack[i], first)) i--;
    if (i < 0) return undefined;
    let value = stack[i][first];
    for (const key of rest) value = own(value, key) ? value[key] : undefined;
    return value;
  }

  function falsy(value) {
    return !value || (Array.isArray(value) && value.length === 0);
  }

  function render(nodes, stack) {
    let out = "";
    for (const node of nodes) {
      if (typeof node === "string") {
        out += node;
      } else if (node.children) {
        const value = lookup(node.name, stack);
        if (node.inverted) {
          if (falsy(value)) out += render(node.children, stack);
        } else if (Array.isArray(value)) {
          for (const item of value) out += render(node.children, [...stack, item]);
        } else if (!falsy(value)) {
          out += render(node.children, value === true ? stack : [...stack, value]);
        }
      } else {
        const value = lookup(node.name, stack);
        const text = value === null || value === undefined ? "" : String(value);
        out += node.raw ? sanitize(text) : text.replace(/[&<>"'`=]/g, (c) => ESCAPES[c]);
      }
    }
    return out;
  }

  // --- sanitizing: what a template renders never runs script ---

  function unsafe(url) {
    // Browsers ignore whitespace and control characters in a URL's scheme.
    return UNSAFE_URL.test(url.replace(/[\s\u0000-\u001f]/g, ""));
  }

  function inert(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html;
    return holder;
  }

  function sanitize(html) {
    const holder = inert(html);
    for (const element of [...holder.content.querySelectorAll("*")]) {
      const tag = element.localName;
      if (DROPPED.has(tag)) {
        element.remove();
        continue;
      }
      for (const attribute of [...element.attributes]) {
        // A link's href stays; scrub() drops it when it would run script.
        if (tag !== "a" || attribute.name !== "href") element.removeAttribute(attribute.name);
      }
      if (!FORMATTING.has(tag)) element.replaceWith(...element.childNodes);
      else if (tag === "a") element.setAttribute("target", "_blank");
    }
    return holder.innerHTML;
  }

  function scrub(root) {
    for (const element of root.querySelectorAll("*")) {
      if (SCRIPTING.has(element.localName)) {
        element.remove();
        continue;
      }
      for (const attribute of [...element.attributes]) {
        const name = attribute.name;
        const url = URL_ATTRIBUTES.includes(name) && unsafe(attribute.value);
        if (url || (name.length > 2 && name.startsWith("on"))) element.removeAttribute(name);
      }
    }
    return root;
  }

  // --- amp-img, static elements ---

  const IMG_ATTRIBUTES = ["src", "srcset", "sizes", "alt", "width", "height", "title",
    "referrerpolicy"];

  function pixel(src) {
    try {
      return new URL(src, document.baseURI).pathname.startsWith(PIXEL_PATH);
    } catch (error) {
      return false;
    }
  }

  // The box AMP gives an element by its layout; the layout whose box has a set height.
  function layOut(element) {
    // Sizes go into CSS: numbers only (a rendered template may set them from data).
    const size = (name) => {
      const value = element.getAttribute(name);
      return value && /^\d+(?:\.\d+)?$/.test(value) ? value : value === "auto" ? "auto" : "";
    };
    const width = size("width");
    const height = size("height");
    const layout = element.getAttribute("layout") || (height && width && width !== "auto" ?
      "fixed" : height ? "fixed-height" : "container");
    const box = {
      "fixed": `display:inline-block;width:${width}px;height:${height}px`,
      "fixed-height": `display:block;height:${height}px`,
      "responsive": `display:block;aspect-ratio:${width}/${height}`,
      "intrinsic": `display:block;max-width:${width}px;aspect-ratio:${width}/${height}`,
      "fill": "display:block;position:absolute;top:0;right:0;bottom:0;left:0",
      "nodisplay": "display:none",
    }[layout] || "display:block";
    element.style.cssText += ";" + box;
    return ["fixed", "fixed-height", "fill"].includes(layout);
  }

  function images(root) {
    for (const host of root.querySelectorAll("amp-img, amp-anim")) {
      if (host.querySelector(":scope > img")) continue;
      const img = document.createElement("img");
      for (const name of IMG_ATTRIBUTES) {
        if (host.hasAttribute(name)) img.setAttribute(name, host.getAttribute(name));
      }
      if (pixel(img.getAttribute("src") || "")) img.removeAttribute("src");
      const sized = layOut(host);
      img.style.cssText = `display:block;width:100%;height:${sized ? "100%" : "auto"}`;
      const fit = host.getAttribute("object-fit");
      if (fit) img.style.objectFit = fit;
      host.append(img);
    }
  }

  function statics() {
    for (const element of document.querySelectorAll("amp-accordion, amp-accordion > section")) {
      element.style.display = "block";
    }
    for (const carousel of document.querySelectorAll("amp-carousel")) {
      layOut(carousel);
      carousel.style.cssText += ";display:flex;overflow-x:auto";
      const slides = carousel.getAttribute("type") === "slides";
      for (const slide of carousel.children) slide.style.flex = slides ? "0 0 100%" : "0 0 auto";
    }
    for (const state of document.querySelectorAll("amp-state")) state.style.display = "none";
  }

  // --- amp-list ---

  function part(list, name) {
    return list.querySelector(`:scope > [${name}]`);
  }

  function show(element, shown) {
    if (element) element.style.display = shown ? "" : "none";
  }

  function templateOf(list) {
    const id = list.getAttribute("template");
    const template = id ? document.getElementById(id) : list.querySelector(":scope > template");
    if (!template || template.getAttribute("type") !== "amp-mustache") {
      throw new Error("no amp-mustache template");
    }
    return template;
  }

  function itemsOf(data, list) {
    const path = list.getAttribute("items") || "items";
    let items = path === "." ? data : lookup(path, [data]);
    if (list.hasAttribute("single-item")) items = [items];
    if (!Array.isArray(items)) throw new Error(`items "${path}" is not a list`);
    const max = list.getAttribute("max-items");
    return max && /^\d+$/.test(max) ? items.slice(0, Number(max)) : items;
  }

  function feedUrl(src) {
    const url = new URL(src, document.baseURI);
    url.searchParams.set("__amp_source_origin", SENDER);
    return url.href;
  }

  function fitted(list) {
    const overflow = part(list, "overflow");
    if (!overflow) return;
    overflow.style.cssText += ";position:absolute;left:0;right:0;bottom:0";
    const clipped = list.scrollHeight > list.clientHeight + 1;
    show(overflow, clipped);
    if (clipped) {
      overflow.addEventListener("click", () => {
        list.style.height = "auto";
        show(overflow, false);
      }, {once: true});
    }
  }

  async function load(list) {
    layOut(list);
    list.style.cssText += ";position:relative;overflow:hidden";
    show(part(list, "fallback"), false);
    show(part(list, "overflow"), false);
    show(part(list, "placeholder"), true);
    try {
      const tree = parse(templateOf(list).innerHTML);
      const response = await fetch(feedUrl(list.getAttribute("src")), {
        credentials: "include",
        headers: {"AMP-Email-Sender": SENDER},
      });
      if (!response.ok) throw new Error(`the feed answered ${response.status}`);
      const items = itemsOf(await response.json(), list);
      const rendered = inert(items.map((item) => render(tree, [item])).join(""));
      const container = document.createElement("div");
      container.setAttribute("role", "list");
      container.append(scrub(rendered.content));
      images(container);
      list.prepend(container);
    } catch (error) {
      console.warn("amp-list", list.getAttribute("src"), error);
      show(part(list, "fallback"), true);
    } finally {
      show(part(list, "placeholder"), false);
      fitted(list);
    }
  }

  async function start() {
    try {
      // The boilerplate hides the body until the runtime is ready: this is the runtime.
      for (const style of document.querySelectorAll("style[amp4email-boilerplate]")) style.remove();
      images(document);
      statics();
      await Promise.allSettled([...document.querySelectorAll("amp-list")].map(load));
    } finally {
      document.documentElement.dataset.ampReady = "1";
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
