// chinwag's chat page, part 1: the Markdown pipeline and the HTTP client (JSON requests with
// the API key, server-sent events). app.js, loaded after this file, is the page itself.
"use strict";

// Tags that could load something from elsewhere or pose as part of the page's own interface.
const FORBIDDEN_TAGS = ["img", "picture", "source", "video", "audio", "track", "iframe", "object",
  "embed", "svg", "math", "style", "link", "meta", "form", "input", "button", "textarea", "select"];

// ---- Markdown -----------------------------------------------------------------------------------

function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

function configureMarkdown() {
  marked.use({
    gfm: true,
    breaks: true,
    // An image in a model's answer would make the browser fetch a URL the model chose: show its
    // description instead.
    renderer: {
      image(token) {
        return `<span class="image-alt">[image: ${escapeHtml(token.text || token.href)}]</span>`;
      },
    },
  });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
}

/** Markdown text -> sanitised HTML, safe to assign to innerHTML. */
function renderMarkdown(text) {
  const html = marked.parse(text);
  return DOMPurify.sanitize(html, { FORBID_TAGS: FORBIDDEN_TAGS, FORBID_ATTR: ["style"] });
}

// ---- API ----------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

/** The API key every request sends (Authorization: Bearer KEY), set by the page. */
const credentials = { apiKey: "" };

function headers(json = false) {
  const result = json ? { "Content-Type": "application/json" } : {};
  if (credentials.apiKey) result.Authorization = `Bearer ${credentials.apiKey}`;
  return result;
}

/** The message of an error body ({"error": {"message"}}), or a description of the status. */
async function errorMessage(response) {
  const fallback = `The server answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    return body?.error?.message || (typeof body?.detail === "string" && body.detail) || fallback;
  } catch {
    return fallback;
  }
}

/** Fetch `path` with the API key; `body` (an object) goes as JSON. Throws ApiError unless 2xx. */
async function request(path, { method = "GET", body, signal } = {}) {
  const response = await fetch(path, {
    method, signal, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  return response;
}

const getJson = async (path) => (await request(path)).json();
