// chinwag's chat page. It talks only to the OpenAI-compatible API of the server that served it:
// GET /v1/models for the personas, POST /v1/chat/completions (streamed as server-sent events)
// for the answers. The conversation lives here, in the page, and the whole history is sent each
// turn, as OpenAI clients do. Model output is Markdown, rendered with marked and sanitised with
// DOMPurify before it reaches the page.
"use strict";

const SAMPLING_FIELDS = ["temperature", "top_p", "top_k", "max_tokens", "repeat_penalty"];
const INTEGER_FIELDS = new Set(["top_k", "max_tokens"]);
const STORAGE = { apiKey: "chinwag.apiKey", persona: "chinwag.persona" };

// Tags that could load something from elsewhere or pose as part of the page's own interface.
const FORBIDDEN_TAGS = ["img", "picture", "source", "video", "audio", "track", "iframe", "object",
  "embed", "svg", "math", "style", "link", "meta", "form", "input", "button", "textarea", "select"];

const $ = (id) => document.getElementById(id);

const ui = {
  persona: $("persona"),
  personaDescription: $("persona-description"),
  modelName: $("model-name"),
  messages: $("messages"),
  emptyHint: $("empty-hint"),
  error: $("error"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  newChat: $("new-chat"),
  apiKey: $("api-key"),
  apiKeySettings: $("api-key-settings"),
};

const state = {
  history: [],        // [{role, content}] of finished turns, sent with every request
  controller: null,   // AbortController of the answer being streamed, or null
  personas: new Map(),
};

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

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = ui.apiKey.value.trim();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

/** The message of an OpenAI-shaped error body, or a description of the HTTP status. */
async function errorMessage(response) {
  const fallback = `The server answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    return body?.error?.message || (typeof body?.detail === "string" && body.detail) || fallback;
  } catch {
    return fallback;
  }
}

async function fetchModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  return (await response.json()).data;
}

/** Read a server-sent event stream, calling onText with each piece of answer text and
 * onSources with the knowledge sources the answer used (the first chunk's "sources"). */
async function readEvents(response, onText, onSources = () => {}) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) {
      if (handleEventLine(line.trim(), onText, onSources)) return;
    }
  }
}

/** Handle one line of the event stream; true once the stream says it is done. */
function handleEventLine(line, onText, onSources) {
  if (!line.startsWith("data:")) return false;
  const data = line.slice(5).trim();
  if (data === "[DONE]") return true;
  const chunk = JSON.parse(data);
  if (chunk.error) throw new ApiError(chunk.error.message || "The server reported an error.");
  if (Array.isArray(chunk.sources) && chunk.sources.length) onSources(chunk.sources);
  const text = chunk.choices?.[0]?.delta?.content;
  if (text) onText(text);
  return false;
}

// ---- Settings -----------------------------------------------------------------------------------

/** The sampling fields the user filled in; throws ApiError naming a field that is invalid. */
function samplingSettings() {
  const settings = {};
  for (const name of SAMPLING_FIELDS) {
    const input = $(name);
    if (input.value.trim() === "" && input.validity.valid) continue;
    const label = document.querySelector(`label[for="${name}"]`).textContent;
    const value = Number(input.value);
    if (!input.validity.valid || Number.isNaN(value)) {
      input.focus();
      throw new ApiError(`${label}: ${input.validationMessage || "not a number"}`);
    }
    settings[name] = INTEGER_FIELDS.has(name) ? Math.trunc(value) : value;
  }
  return settings;
}

// ---- Messages -----------------------------------------------------------------------------------

function addMessage(role, text = "") {
  const item = document.createElement("article");
  item.className = `message ${role}`;
  const who = document.createElement("h2");
  who.className = "who";
  who.textContent = role === "user" ? "You" : ui.persona.value || "Assistant";
  const body = document.createElement("div");
  body.className = "content";
  if (role === "user") body.textContent = text;
  item.append(who, body);
  ui.messages.append(item);
  updateEmptyHint();
  scrollToEnd(true);
  return item;
}

/** List the knowledge an answer used under it: title (a link), tokens, or why it failed. */
function showSources(item, sources) {
  const box = document.createElement("details");
  box.className = "sources";
  const summary = document.createElement("summary");
  summary.textContent = `Sources (${sources.length})`;
  const list = document.createElement("ul");
  for (const source of sources) {
    const entry = document.createElement("li");
    const name = source.title || source.name;
    if (source.url && /^https?:\/\//i.test(source.url)) {
      const link = document.createElement("a");
      link.href = source.url;
      link.textContent = name;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      entry.append(link);
    } else {
      entry.append(name);
    }
    entry.append(source.error ? ` (failed: ${source.error})` : ` (${source.tokens} tokens)`);
    list.append(entry);
  }
  box.append(summary, list);
  item.append(box);
}

function setAnswer(item, text) {
  item.querySelector(".content").innerHTML = renderMarkdown(text);
  scrollToEnd(false);
}

function scrollToEnd(always) {
  const list = ui.messages;
  const nearEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  if (always || nearEnd) list.scrollTop = list.scrollHeight;
}

function updateEmptyHint() {
  ui.emptyHint.hidden = ui.messages.childElementCount > 0;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

/** Show what went wrong; when the server wants an API key, open the field for it. */
function reportFailure(error) {
  showError(error instanceof ApiError ? error.message : `Could not reach the server: ${error.message}`);
  if (error.status === 401 || error.status === 403) ui.apiKeySettings.open = true;
}

// ---- Conversation -------------------------------------------------------------------------------

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.messages.setAttribute("aria-busy", String(busy));
  // Keep keyboard focus somewhere useful when the button that had it becomes disabled.
  if (!busy && (document.activeElement === ui.stop || document.activeElement === document.body)) {
    ui.prompt.focus();
  }
}

function requestBody() {
  return {
    model: ui.persona.value,
    messages: state.history,
    stream: true,
    ...samplingSettings(),
  };
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || state.controller) return;
  if (!ui.persona.value) {
    showError("No persona to talk to: the list of personas could not be loaded.");
    return;
  }
  showError("");
  let body;
  try {
    state.history.push({ role: "user", content: text });
    body = requestBody();
  } catch (error) {
    state.history.pop();
    showError(error.message);
    return;
  }
  ui.prompt.value = "";
  autosize();
  const userItem = addMessage("user", text);
  await streamAnswer(body, userItem, text);
}

async function streamAnswer(body, userItem, text) {
  const history = state.history;  // "New chat" replaces it: this turn then ends in the old one
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const item = addMessage("assistant");
  item.classList.add("streaming");
  let answer = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
    await readEvents(response, (piece) => {
      answer += piece;
      setAnswer(item, answer);
    }, (sources) => showSources(item, sources));
  } catch (error) {
    if (error.name !== "AbortError") {
      failTurn(error, { history, userItem, item, text, answer });
      return;
    }
    item.classList.add("stopped");
  } finally {
    item.classList.remove("streaming");
    if (state.controller === controller) state.controller = null;
    setBusy(false);
  }
  finishTurn(history, item, answer);
}

function finishTurn(history, item, answer) {
  if (answer.trim()) {
    history.push({ role: "assistant", content: answer });
    return;
  }
  // Nothing came (stopped at once, or the model had nothing to say): the user's message stays in
  // the history, and the next one follows it.
  item.querySelector(".content").textContent = "(no answer)";
  item.classList.add("empty");
}

/** Undo a turn the server refused, so the user can fix the cause and send it again. */
function failTurn(error, { history, userItem, item, text, answer }) {
  reportFailure(error);
  if (answer) {
    // The stream broke half-way: keep what came, as the end of this turn.
    history.push({ role: "assistant", content: answer });
    item.classList.add("stopped");
    return;
  }
  history.pop();
  userItem.remove();
  item.remove();
  updateEmptyHint();
  if (!ui.prompt.value) ui.prompt.value = text;
}

function stop() {
  state.controller?.abort();
}

function newChat() {
  stop();
  state.history = [];
  ui.messages.replaceChildren();
  updateEmptyHint();
  showError("");
  ui.prompt.focus();
}

// ---- Personas -----------------------------------------------------------------------------------

function fillPersonas(models) {
  const personas = models.filter((m) => m.owned_by === "persona");
  const model = models.find((m) => m.owned_by === "chinwag");
  ui.modelName.textContent = model ? model.id : "unknown";
  state.personas = new Map(personas.map((p) => [p.id, p]));
  ui.persona.replaceChildren(...personas.map((p) => new Option(p.id, p.id)));
  const saved = localStorage.getItem(STORAGE.persona);
  if (saved && state.personas.has(saved)) ui.persona.value = saved;
  describePersona();
  if (personas.length === 0) showError("The server has no personas.");
}

function describePersona() {
  const persona = state.personas.get(ui.persona.value);
  ui.personaDescription.textContent = persona?.description || "";
}

async function loadPersonas() {
  try {
    fillPersonas(await fetchModels());
  } catch (error) {
    ui.modelName.textContent = "unavailable";
    reportFailure(error);
  }
}

// ---- Wiring -------------------------------------------------------------------------------------

function autosize() {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 240)}px`;
}

function onPromptKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    if (!ui.send.disabled) ui.composer.requestSubmit();
  } else if (event.key === "Escape" && state.controller) {
    event.preventDefault();
    stop();
  }
}

/** Keep a new API key and list the personas again with it. */
function saveApiKey() {
  const key = ui.apiKey.value.trim();
  if (key === (localStorage.getItem(STORAGE.apiKey) || "")) return;
  localStorage.setItem(STORAGE.apiKey, key);
  showError("");
  loadPersonas();
}

function wire() {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", onPromptKey);
  ui.prompt.addEventListener("input", autosize);
  ui.stop.addEventListener("click", stop);
  ui.newChat.addEventListener("click", newChat);
  ui.persona.addEventListener("change", () => {
    localStorage.setItem(STORAGE.persona, ui.persona.value);
    describePersona();
  });
  ui.apiKey.value = localStorage.getItem(STORAGE.apiKey) || "";
  ui.apiKey.addEventListener("change", saveApiKey);
  $("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveApiKey();
  });
}

configureMarkdown();
wire();
updateEmptyHint();
loadPersonas();
ui.prompt.focus();

// For tests and the curious: the page's own Markdown pipeline.
window.chinwag = Object.freeze({ renderMarkdown });
