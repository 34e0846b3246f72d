// chinwag's chat page, part 2 (part 1, api.js: the Markdown pipeline, the HTTP client). It
// talks only to the server that served it: GET /v1/models (models), GET /personas, the user's
// conversations (/users/{user}/conversations, /conversations/{id}), pinned facts
// (/users/{user}/facts/{persona}), and the chat turns themselves (POST /chat/{persona},
// /conversations/{id}/regenerate, /conversations/{id}/edit), each answered as a stream of
// server-sent events. Conversations live on the server; the page shows one at a time.
"use strict";

const SAMPLING_FIELDS = ["temperature", "top_p", "top_k", "max_tokens", "repeat_penalty"];
const INTEGER_FIELDS = new Set(["top_k", "max_tokens"]);
const STORAGE = {
  apiKey: "chinwag.apiKey", persona: "chinwag.persona", user: "chinwag.user",
  settings: (persona) => `chinwag.settings.${persona}`,
};

const $ = (id) => document.getElementById(id);

const ui = {
  menu: $("menu"), sidebar: $("sidebar"), userLine: $("user-line"), changeName: $("change-name"),
  conversationList: $("conversation-list"), noConversations: $("no-conversations"),
  newChat: $("new-chat"), persona: $("persona"), personaDescription: $("persona-description"),
  memoryPolicy: $("memory-policy"), modelField: $("model-field"), model: $("model"),
  messages: $("messages"), emptyHint: $("empty-hint"), error: $("error"),
  composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
  factList: $("fact-list"), noFacts: $("no-facts"), factForm: $("fact-form"), fact: $("fact"),
  clearFacts: $("clear-facts"), apiKey: $("api-key"), apiKeySettings: $("api-key-settings"),
  nameDialog: $("name-dialog"), nameForm: $("name-form"), userName: $("user-name"),
  nameError: $("name-error"), nameCancel: $("name-cancel"),
};

const state = {
  user: localStorage.getItem(STORAGE.user) || "",
  personas: new Map(),   // name -> the persona's entry of GET /personas
  conversation: null,    // {id, persona, title} of the open conversation, null for a new chat
  messages: [],          // [{role, content, seq, model, sources, stopped, el}] shown, in order
  controller: null,      // AbortController of the answer being streamed, or null
};

const userPath = () => `/users/${encodeURIComponent(state.user)}`;
const conversationPath = (id) => `/conversations/${encodeURIComponent(id)}`;

/** Read a server-sent event stream, calling onEvent(name, data) for each event. */
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      handleEventBlock(buffer.slice(0, end), onEvent);
      buffer = buffer.slice(end + 2);
    }
  }
  if (buffer.trim()) handleEventBlock(buffer, onEvent);
}

function handleEventBlock(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length) onEvent(name, JSON.parse(data.join("\n")));
}

// ---- Errors -------------------------------------------------------------------------------------

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

/** Show what went wrong; when the server wants an API key, open the field for it. */
function reportFailure(error) {
  showError(error instanceof ApiError ? error.message : `Could not reach the server: ${error.message}`);
  if (error.status === 401 || error.status === 403) {
    ui.apiKeySettings.open = true;
    openMenu(true);
  }
}

/** Run `job`, reporting a failure instead of throwing. */
async function attempt(job) {
  try {
    return await job();
  } catch (error) {
    reportFailure(error);
    return undefined;
  }
}

// ---- Who you are --------------------------------------------------------------------------------

function showUser() {
  ui.userLine.textContent = state.user ? `You are ${state.user}` : "Not signed in";
}

function askName() {
  ui.userName.value = state.user;
  ui.nameError.hidden = true;
  ui.nameCancel.hidden = !state.user;
  if (!ui.nameDialog.open) ui.nameDialog.showModal();
  ui.userName.focus();
}

function saveName(event) {
  event.preventDefault();
  const name = ui.userName.value.trim();
  if (!name) {
    ui.nameError.textContent = "Please write a name.";
    ui.nameError.hidden = false;
    ui.userName.focus();
    return;
  }
  const changed = name !== state.user;
  state.user = name;
  localStorage.setItem(STORAGE.user, name);
  ui.nameDialog.close();
  showUser();
  if (changed) {
    newChat();
    refreshConversations();
    loadFacts();
  }
  ui.prompt.focus();
}

function onNameDialogCancel(event) {
  if (!state.user) event.preventDefault();  // Escape: a name is needed before anything else
}

// ---- Personas and models ------------------------------------------------------------------------

const currentPersona = () => state.personas.get(ui.persona.value);
const characterName = (persona) => persona?.character || persona?.name || "Assistant";

async function loadPersonas() {
  const personas = (await getJson("/personas")).data;
  state.personas = new Map(personas.map((p) => [p.name, p]));
  ui.persona.replaceChildren(...personas.map((p) => new Option(
    p.character && p.character !== p.name ? `${p.name} (${p.character})` : p.name, p.name)));
  const saved = localStorage.getItem(STORAGE.persona);
  if (saved && state.personas.has(saved)) ui.persona.value = saved;
  if (personas.length === 0) showError("The server has no personas.");
  personaChanged();
}

async function loadModels() {
  const models = (await getJson("/v1/models")).data
    .filter((m) => m.owned_by === "chinwag" && "status" in m);
  const chosen = ui.model.value;
  ui.model.replaceChildren(new Option("Persona's default", ""),
    ...models.map((m) => new Option(m.id, m.id)));
  if (models.some((m) => m.id === chosen)) ui.model.value = chosen;
  ui.modelField.hidden = models.length < 2;
}

/** Show the persona's description and memory, its remembered settings and the user's facts. */
function personaChanged() {
  const persona = currentPersona();
  ui.personaDescription.textContent = persona?.description || "";
  ui.memoryPolicy.textContent = persona?.memory?.text ? `Memory: ${persona.memory.text}` : "";
  // A persona with its own LLM always answers with it: the picker would not be heeded.
  ui.model.disabled = Boolean(persona?.own_model);
  if (ui.model.disabled) ui.model.value = "";
  loadSettings();
  loadFacts();
}

function onPersonaPicked() {
  localStorage.setItem(STORAGE.persona, ui.persona.value);
  personaChanged();
  if (state.conversation?.persona !== ui.persona.value) newChat();
}

// ---- Settings -----------------------------------------------------------------------------------

function loadSettings() {
  const persona = currentPersona();
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE.settings(ui.persona.value)) || "{}");
  } catch { /* a damaged entry: start from the defaults */ }
  for (const name of SAMPLING_FIELDS) {
    const input = $(name);
    input.value = saved[name] ?? "";
    const fallback = persona?.sampling?.[name];
    input.placeholder = fallback === undefined || fallback === null ? "default" : `${fallback}`;
  }
}

function saveSettings() {
  const values = {};
  for (const name of SAMPLING_FIELDS) {
    if ($(name).value.trim() !== "") values[name] = $(name).value.trim();
  }
  localStorage.setItem(STORAGE.settings(ui.persona.value), JSON.stringify(values));
}

/** The sampling fields the user filled in; throws ApiError naming a field that is invalid. */
function samplingSettings() {
  const settings = {};
  for (const name of SAMPLING_FIELDS) {
    const input = $(name);
    if (input.value.trim() === "" && input.validity.valid) continue;
    const label = document.querySelector(`label[for="${name}"]`).textContent;
    const value = Number(input.value);
    if (!input.validity.valid || Number.isNaN(value)) {
      input.closest("details").open = true;
      input.focus();
      throw new ApiError(`${label}: ${input.validationMessage || "not a number"}`);
    }
    settings[name] = INTEGER_FIELDS.has(name) ? Math.trunc(value) : value;
  }
  return settings;
}

// ---- Pinned facts -------------------------------------------------------------------------------

const factsPath = () => `${userPath()}/facts/${encodeURIComponent(ui.persona.value)}`;

function showFacts(facts) {
  ui.factList.replaceChildren(...facts.map((fact) => {
    const item = document.createElement("li");
    item.textContent = typeof fact === "string" ? fact : fact.text;
    return item;
  }));
  ui.noFacts.hidden = facts.length > 0;
}

async function loadFacts() {
  if (!state.user || !ui.persona.value) return showFacts([]);
  await attempt(async () => showFacts((await getJson(factsPath())).data));
}

async function addFact(event) {
  event.preventDefault();
  const text = ui.fact.value.trim();
  if (!text || !state.user) return;
  await attempt(async () => {
    await request(factsPath(), { method: "POST", body: { text } });
    ui.fact.value = "";
    await loadFacts();
  });
}

async function clearFacts() {
  if (!state.user || !confirm(`Forget every fact pinned for ${characterName(currentPersona())}?`)) return;
  await attempt(async () => {
    await request(factsPath(), { method: "DELETE" });
    await loadFacts();
  });
}

// ---- Conversations list -------------------------------------------------------------------------

const titleOf = (c) => c.title || "Untitled conversation";

async function refreshConversations() {
  if (!state.user) return;
  await attempt(async () => {
    const conversations = (await getJson(`${userPath()}/conversations`)).data;
    ui.conversationList.replaceChildren(...conversations.map(conversationItem));
    ui.noConversations.hidden = conversations.length > 0;
  });
}

function conversationItem(conversation) {
  const item = document.createElement("li");
  item.className = "conversation";
  item.dataset.id = conversation.id;
  const open = button("", () => openConversation(conversation.id), "open");
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = titleOf(conversation);
  const persona = document.createElement("span");
  persona.className = "persona";
  persona.textContent = conversation.persona;
  open.append(title, persona);
  if (state.conversation?.id === conversation.id) open.setAttribute("aria-current", "true");
  const actions = document.createElement("div");
  actions.className = "conversation-actions";
  actions.append(
    button("Rename", () => renameConversation(conversation), "link"),
    button("Delete", () => deleteConversation(conversation), "link"),
    button("Export JSON", () => exportConversation(conversation, "json"), "link"),
    button("Export Markdown", () => exportConversation(conversation, "markdown"), "link"));
  item.append(open, actions);
  return item;
}

function button(text, onClick, className = "secondary") {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

async function renameConversation(conversation) {
  const title = prompt("New title for this conversation:", titleOf(conversation));
  if (title === null || !title.trim()) return;
  await attempt(async () => {
    await request(conversationPath(conversation.id), { method: "PATCH", body: { title: title.trim() } });
    if (state.conversation?.id === conversation.id) state.conversation.title = title.trim();
    await refreshConversations();
  });
}

async function deleteConversation(conversation) {
  if (!confirm(`Delete "${titleOf(conversation)}"? This cannot be undone.`)) return;
  await attempt(async () => {
    await request(conversationPath(conversation.id), { method: "DELETE" });
    if (state.conversation?.id === conversation.id) newChat();
    await refreshConversations();
  });
}

async function exportConversation(conversation, format) {
  await attempt(async () => {
    const markdown = format === "markdown";
    const response = await request(conversationPath(conversation.id) + (markdown ? "?format=markdown" : ""));
    const text = await response.text();
    const type = markdown ? "text/markdown" : "application/json";
    const name = `${slug(titleOf(conversation)) || "conversation"}-${conversation.id}.${markdown ? "md" : "json"}`;
    download(new Blob([text], { type }), name);
  });
}

const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40);

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---- Messages -----------------------------------------------------------------------------------

/** Add a message to the page: `message` is {role, content, seq?, model?, sources?, stopped?}. */
function addMessage(message, { greeting = false } = {}) {
  const item = document.createElement("article");
  item.className = `message ${message.role}${greeting ? " greeting" : ""}`;
  const who = document.createElement("h2");
  who.className = "who";
  who.textContent = message.role === "user" ? state.user : characterName(
    state.personas.get(state.conversation?.persona || ui.persona.value));
  const body = document.createElement("div");
  body.className = "content";
  const meta = document.createElement("div");
  meta.className = "meta";
  const actions = document.createElement("div");
  actions.className = "message-actions";
  item.append(who, body, meta, actions);
  ui.messages.append(item);
  const shown = { ...message, el: item };
  if (!greeting) state.messages.push(shown);
  if (message.role === "user") {
    body.textContent = message.content;
    actions.append(button("Edit", () => startEdit(shown), "link"));
  } else {
    if (message.content) body.innerHTML = renderMarkdown(message.content);
    if (!greeting) actions.append(button("Copy", () => copyAnswer(shown), "link"));
    showMeta(shown);
  }
  updateEmptyHint();
  scrollToEnd(true);
  return shown;
}

/** The small print under an answer: the model, stopped or cut short, and the sources. */
function showMeta(message) {
  const meta = message.el.querySelector(".meta");
  meta.replaceChildren();
  message.el.classList.toggle("stopped", Boolean(message.stopped));
  const notes = [message.stopped && "stopped",
    message.finish === "length" && "cut short (max tokens)"].filter(Boolean);
  if (message.model || notes.length) {
    const small = document.createElement("p");
    small.className = "model-used";
    if (message.model) {
      const model = document.createElement("span");
      model.className = "model-id";
      model.title = "The model that wrote this answer";
      model.textContent = message.model;
      small.append(model);
    }
    for (const note of notes) small.append(small.childNodes.length ? ` · ${note}` : note);
    meta.append(small);
  }
  if (message.sources?.length) meta.append(sourcesList(message.sources));
}

/** The knowledge an answer used: title or URL (a link), or why it failed. */
function sourcesList(sources) {
  const box = document.createElement("details");
  box.className = "sources";
  box.open = true;
  const summary = document.createElement("summary");
  summary.textContent = `Sources (${sources.length})`;
  const list = document.createElement("ul");
  for (const source of sources) {
    const entry = document.createElement("li");
    const name = source.title || source.url || source.name || source.kind || "source";
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
    if (source.error) entry.append(` (failed: ${source.error})`);
    else if (source.tokens !== undefined) entry.append(` (${source.tokens} tokens)`);
    list.append(entry);
  }
  box.append(summary, list);
  return box;
}

function setWaiting(message, text) {
  let line = message.el.querySelector(".waiting");
  if (!text) return line?.remove();
  if (!line) {
    line = document.createElement("p");
    line.className = "waiting";
    message.el.querySelector(".content").before(line);
  }
  line.textContent = text;
}

const aheadText = (n) => (n === 0 ? "You are next" : n === 1 ? "1 person ahead of you" : `${n} people ahead of you`);

async function copyAnswer(message) {
  const copy = message.el.querySelector(".message-actions button");
  try {
    await navigator.clipboard.writeText(message.content);
    copy.textContent = "Copied";
    setTimeout(() => { copy.textContent = "Copy"; }, 2000);
  } catch (error) {
    showError(`Could not copy: ${error.message}`);
  }
}

/** Regenerate on the last answer only; Edit, Regenerate and Send off while an answer streams. */
function updateActions() {
  const busy = Boolean(state.controller);
  ui.messages.querySelectorAll(".regenerate").forEach((b) => b.remove());
  const last = state.messages.at(-1);
  if (last?.role === "assistant" && state.conversation && !busy) {
    last.el.querySelector(".message-actions").append(button("Regenerate", regenerate, "link regenerate"));
  }
  ui.messages.querySelectorAll(".message.user .message-actions button").forEach((b) => {
    b.disabled = busy || !state.conversation;
  });
}

function scrollToEnd(always) {
  const list = ui.messages;
  const nearEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  if (always || nearEnd) list.scrollTop = list.scrollHeight;
}

function updateEmptyHint() {
  ui.emptyHint.hidden = ui.messages.childElementCount > 0;
}

/** Empty the message list; a new chat with a persona that greets shows the greeting. */
function clearMessages() {
  state.messages = [];
  ui.messages.replaceChildren();
  const greeting = !state.conversation && currentPersona()?.greeting;
  if (greeting) addMessage({ role: "assistant", content: greeting }, { greeting: true });
  updateEmptyHint();
}

// ---- Conversations ------------------------------------------------------------------------------

function newChat() {
  stop();
  state.conversation = null;
  clearMessages();
  markCurrent();
  showError("");
  updateActions();
  openMenu(false);
  ui.prompt.focus();
}

async function openConversation(id) {
  stop();
  showError("");
  await attempt(async () => {
    const conversation = await getJson(conversationPath(id));
    state.conversation = {
      id: conversation.id, persona: conversation.persona, title: conversation.heading || conversation.title,
    };
    if (state.personas.has(conversation.persona) && ui.persona.value !== conversation.persona) {
      ui.persona.value = conversation.persona;
      localStorage.setItem(STORAGE.persona, conversation.persona);
      personaChanged();
    }
    showMessages(conversation.messages);
    markCurrent();
    openMenu(false);
    ui.prompt.focus();
  });
}

function showMessages(messages) {
  clearMessages();
  messages.filter((m) => m.role === "user" || m.role === "assistant").forEach((m, index) => {
    addMessage({ role: m.role, content: m.content, seq: m.seq ?? index, model: m.model,
      sources: m.sources, stopped: m.role === "assistant" && m.complete === false });
  });
  updateActions();
}

/** After a finished turn: take the stored messages' seq numbers (Edit needs them); the page
 * is drawn again only when it no longer matches what the server kept. */
async function syncConversation() {
  const id = state.conversation?.id;
  if (!id) return;
  const conversation = await getJson(conversationPath(id));
  if (state.conversation?.id !== id || state.controller) return;
  const stored = conversation.messages.filter((m) => m.role === "user" || m.role === "assistant");
  const same = stored.length === state.messages.length
    && stored.every((m, i) => m.role === state.messages[i].role);
  if (!same) return showMessages(conversation.messages);
  stored.forEach((m, i) => { state.messages[i].seq = m.seq ?? i; });
}

function markCurrent() {
  for (const item of ui.conversationList.children) {
    const open = item.querySelector(".open");
    if (item.dataset.id === state.conversation?.id) open.setAttribute("aria-current", "true");
    else open.removeAttribute("aria-current");
  }
}

// ---- A turn -------------------------------------------------------------------------------------

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.messages.setAttribute("aria-busy", String(busy));
  updateActions();
  // Keep keyboard focus somewhere useful when the button that had it becomes disabled.
  if (!busy && (document.activeElement === ui.stop || document.activeElement === document.body)) {
    ui.prompt.focus();
  }
}

/** The options every turn sends: the user, the model picked (null: the persona's), sampling. */
function turnOptions() {
  return { user: state.user, model: (!ui.model.disabled && ui.model.value) || null,
    params: samplingSettings() };
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || state.controller) return;
  if (!state.user) return askName();
  const persona = state.conversation?.persona || ui.persona.value;
  if (!persona) return showError("No persona to talk to: the list of personas could not be loaded.");
  let body;
  try {
    body = { ...turnOptions(), conversation: state.conversation?.id || null, text };
  } catch (error) {
    return showError(error.message);
  }
  showError("");
  ui.prompt.value = "";
  autosize();
  const userMessage = addMessage({ role: "user", content: text });
  const ok = await streamAnswer(`/chat/${encodeURIComponent(persona)}`, body);
  if (!ok) {
    // Refused before any answer: take the message back so it can be fixed and sent again.
    userMessage.el.remove();
    state.messages.splice(state.messages.indexOf(userMessage), 1);
    if (!ui.prompt.value) ui.prompt.value = text;
    updateEmptyHint();
    updateActions();
  }
}

async function regenerate() {
  const last = state.messages.at(-1);
  if (!state.conversation || state.controller || last?.role !== "assistant") return;
  let body;
  try {
    body = turnOptions();
  } catch (error) {
    return showError(error.message);
  }
  showError("");
  dropFrom(state.messages.length - 1);
  const path = `${conversationPath(state.conversation.id)}/regenerate`;
  if (!(await streamAnswer(path, body))) await attempt(syncConversation);
}

function dropFrom(index) {
  for (const message of state.messages.splice(index)) message.el.remove();
  updateEmptyHint();
}

function startEdit(message) {
  if (state.controller || message.el.querySelector(".edit")) return;
  const body = message.el.querySelector(".content");
  const actions = message.el.querySelector(".message-actions");
  const editor = document.createElement("textarea");
  editor.className = "edit";
  editor.value = message.content;
  editor.rows = Math.min(8, message.content.split("\n").length + 1);
  editor.setAttribute("aria-label", "Edit your message");
  const finish = () => {
    editor.remove();
    body.hidden = false;
    actions.replaceChildren(button("Edit", () => startEdit(message), "link"));
    updateActions();
  };
  const save = button("Save and send", () => saveEdit(message, editor.value, finish), "");
  const cancel = button("Cancel", () => { finish(); message.el.querySelector(".message-actions button").focus(); });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      cancel.click();
    }
  });
  body.hidden = true;
  body.after(editor);
  actions.replaceChildren(save, cancel);
  editor.focus();
}

async function saveEdit(message, value, finish) {
  const text = value.trim();
  if (!text || state.controller || !state.conversation) return;
  let body;
  try {
    body = { ...turnOptions(), seq: message.seq, text };
  } catch (error) {
    return showError(error.message);
  }
  showError("");
  finish();
  if (message.seq === undefined) {
    // A turn stopped half-way has no number from the server yet: ask for it.
    await attempt(syncConversation);
    if (!state.messages.includes(message) || message.seq === undefined) {
      return showError("That message changed on the server; please try again.");
    }
    body.seq = message.seq;
  }
  dropFrom(state.messages.indexOf(message));
  addMessage({ role: "user", content: text });
  const path = `${conversationPath(state.conversation.id)}/edit`;
  if (!(await streamAnswer(path, body))) await attempt(syncConversation);
}

/** Stream one answer from `path` into a new assistant message. Returns false when the server
 * refused the turn before answering (the message is then removed), true otherwise. */
async function streamAnswer(path, body) {
  const controller = new AbortController();
  state.controller = controller;
  const answer = addMessage({ role: "assistant", content: "", model: null });
  answer.el.classList.add("streaming");
  setBusy(true);
  let started = false;
  try {
    const response = await request(path, { method: "POST", body, signal: controller.signal });
    started = true;
    await readEvents(response, (name, data) => onStreamEvent(answer, name, data));
  } catch (error) {
    if (error.name !== "AbortError") reportFailure(error);
    answer.stopped = started;
  } finally {
    answer.el.classList.remove("streaming");
    setWaiting(answer, "");
    if (state.controller === controller) state.controller = null;
  }
  if (!started) {
    answer.el.remove();
    state.messages.splice(state.messages.indexOf(answer), 1);
  } else if (!answer.content && !answer.stopped) {
    answer.el.querySelector(".content").textContent = "(no answer)";
    answer.el.classList.add("empty");
  }
  if (started) showMeta(answer);
  setBusy(false);
  // The stored messages' numbers (Edit needs them) come with "done"; else ask for them.
  if (started && !answer.stopped && state.messages.some((m) => m.seq === undefined)) {
    await attempt(syncConversation);
  }
  refreshConversations();
  return started;
}

function onStreamEvent(answer, name, data) {
  if (name === "conversation") {
    const isNew = state.conversation?.id !== data.conversation;
    state.conversation = { id: data.conversation, persona: data.persona, title: data.title };
    answer.model = data.model;
    showMeta(answer);
    if (isNew) refreshConversations();
  } else if (name === "queued") {
    if (!answer.content) setWaiting(answer, aheadText(data.ahead));
  } else if (name === "status") {
    if (!answer.content) setWaiting(answer, data.text);
  } else if (name === "sources") {
    answer.sources = data.sources;
    showMeta(answer);
  } else if (name === "token") {
    setWaiting(answer, "");
    answer.content += data.text;
    answer.el.querySelector(".content").innerHTML = renderMarkdown(answer.content);
    scrollToEnd(false);
  } else if (name === "done") {
    if (data.model) answer.model = data.model;
    answer.finish = data.finish_reason;
    answer.seq = data.reply_seq ?? undefined;
    const asked = state.messages[state.messages.indexOf(answer) - 1];
    if (asked?.role === "user") asked.seq = data.question_seq ?? undefined;
  } else if (name === "error") {
    throw new ApiError(data.error?.message || "The server reported an error.");
  }
}

function stop() {
  state.controller?.abort();
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
  }
}

function onPageKey(event) {
  if (event.key !== "Escape" || ui.nameDialog.open) return;
  if (state.controller) {
    event.preventDefault();
    stop();
  } else if (ui.menu.getAttribute("aria-expanded") === "true") {
    openMenu(false);
    ui.menu.focus();
  }
}

/** The side panel behind the Menu button (narrow screens only; wide ones always show it). */
function openMenu(open) {
  ui.menu.setAttribute("aria-expanded", String(open));
  ui.sidebar.classList.toggle("open", open);
}

/** Keep a new API key and load everything again with it. */
function saveApiKey() {
  const key = ui.apiKey.value.trim();
  if (key === (localStorage.getItem(STORAGE.apiKey) || "")) return;
  localStorage.setItem(STORAGE.apiKey, key);
  showError("");
  start();
}

function wire() {
  ui.apiKey.addEventListener("input", () => { credentials.apiKey = ui.apiKey.value.trim(); });
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", onPromptKey);
  ui.prompt.addEventListener("input", autosize);
  document.addEventListener("keydown", onPageKey);
  ui.stop.addEventListener("click", stop);
  ui.newChat.addEventListener("click", newChat);
  ui.menu.addEventListener("click", () => openMenu(ui.menu.getAttribute("aria-expanded") !== "true"));
  ui.persona.addEventListener("change", onPersonaPicked);
  for (const name of SAMPLING_FIELDS) $(name).addEventListener("change", saveSettings);
  ui.factForm.addEventListener("submit", addFact);
  ui.clearFacts.addEventListener("click", clearFacts);
  ui.changeName.addEventListener("click", askName);
  ui.nameForm.addEventListener("submit", saveName);
  ui.nameCancel.addEventListener("click", () => ui.nameDialog.close());
  ui.nameDialog.addEventListener("cancel", onNameDialogCancel);
  ui.apiKey.value = localStorage.getItem(STORAGE.apiKey) || "";
  credentials.apiKey = ui.apiKey.value.trim();
  ui.apiKey.addEventListener("change", saveApiKey);
  $("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveApiKey();
  });
}

async function start() {
  await attempt(loadPersonas);
  if (!state.conversation && !state.messages.length) clearMessages();
  await Promise.all([attempt(loadModels), refreshConversations()]);
}

configureMarkdown();
wire();
showUser();
updateEmptyHint();
start();
if (state.user) ui.prompt.focus();
else askName();

// For tests and the curious: the page's own Markdown pipeline.
window.chinwag = Object.freeze({ renderMarkdown });
