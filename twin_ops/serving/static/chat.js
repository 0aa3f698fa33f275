// The chat page: choose a twin, ask, read the answer as it streams, see its sources, go on with the
// conversation, rate an answer. Plain DOM, no framework, nothing fetched from anywhere but this app.
//
// Safety: every text from the model or the API goes into the page through textContent (never
// innerHTML); source links are kept only when they are http(s). The API key (when the app has one)
// lives in sessionStorage for this tab, travels only in the Authorization header and is never put in
// a URL or logged.
"use strict";

const KEY_STORAGE = "twin-ops-api-key";
const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  messages: [], // the conversation sent with every question: [{role, content}]
  busy: false,
  retry: null, // what to do once a key is entered after a 401
};

const $ = (id) => document.getElementById(id);

function status(text) {
  $("status").textContent = text;
}

function headers(json) {
  const result = json ? { "Content-Type": "application/json" } : {};
  if (state.key) result.Authorization = `Bearer ${state.key}`;
  return result;
}

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// The OpenAI-style error body's message, or the status line.
async function apiError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (ignored) {
    body = null;
  }
  const message = body && body.error && body.error.message ? body.error.message : `${response.status} ${response.statusText}`;
  return new ApiError(response.status, message, body);
}

async function api(path, options) {
  const response = await fetch(path, options);
  if (response.status === 401) {
    const error = await apiError(response);
    askForKey(state.key ? "The API key was not accepted. Enter it again." : "This twin needs its API key.");
    throw error;
  }
  if (!response.ok) throw await apiError(response);
  return response;
}

// --- the API key ---------------------------------------------------------------------------------

function askForKey(why) {
  $("key-why").textContent = why;
  $("key-form").hidden = false;
  $("api-key").value = "";
  $("api-key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  $("api-key").value = "";
  sessionStorage.setItem(KEY_STORAGE, state.key);
  $("key-form").hidden = true;
  const retry = state.retry;
  state.retry = null;
  if (retry) retry();
  $("message").focus();
});

// --- twins ---------------------------------------------------------------------------------------

async function loadTwins() {
  state.retry = loadTwins;
  let body;
  try {
    body = await (await api("v1/models", { headers: headers(false) })).json();
  } catch (error) {
    if (error.status !== 401) status(`Could not list the twins: ${error.message}`);
    return;
  }
  state.retry = null;
  const select = $("twin");
  const chosen = select.value;
  select.replaceChildren();
  for (const model of body.data) {
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = `${model.id} (${model.model_version})`;
    select.append(option);
  }
  if (chosen) select.value = chosen;
  status(body.data.length ? "Ready." : "This app serves no twin.");
}

function newConversation(note) {
  state.messages = [];
  $("conversation").replaceChildren();
  status(note);
}

$("twin").addEventListener("change", () => newConversation(`A new conversation with ${$("twin").value}.`));
$("new-chat").addEventListener("click", () => {
  newConversation("A new conversation.");
  $("message").focus();
});

// --- messages ------------------------------------------------------------------------------------

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("p");
  who.className = "who";
  who.textContent = role === "user" ? "You" : $("twin").value || "Twin";
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  $("conversation").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function safeLink(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch (ignored) {
    return null;
  }
}

function showSources(item, sources) {
  if (!sources || !sources.length) return;
  const list = document.createElement("ul");
  list.className = "sources";
  list.setAttribute("aria-label", "Sources");
  for (const source of sources) {
    const entry = document.createElement("li");
    const href = safeLink(source.url);
    const label = source.title || source.url;
    if (href) {
      const link = document.createElement("a");
      link.href = href;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = label;
      entry.append(link);
    } else {
      entry.textContent = label;
    }
    list.append(entry);
  }
  item.append(list);
}

function showError(item, text) {
  item.classList.add("error");
  const note = document.createElement("p");
  note.className = "text";
  note.textContent = text;
  item.append(note);
}

// Server-sent events from a fetch body: "data: {json}" events separated by a blank line.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trim())
        .join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

async function ask(question) {
  const model = $("twin").value;
  if (!model) {
    status("Choose a twin first.");
    return;
  }
  state.busy = true;
  $("send").disabled = true;
  const sent = [...state.messages, { role: "user", content: question }];
  const userItem = addMessage("user", question);
  const item = addMessage("assistant", "");
  const text = item.querySelector(".text");
  item.setAttribute("aria-busy", "true");
  status("The twin is answering…");
  let id = null;
  let answer = "";
  let failed = null;
  try {
    const response = await api("v1/chat/completions", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({ model, messages: sent, stream: true }),
    });
    for await (const chunk of events(response)) {
      if (chunk.error) {
        failed = chunk.error.message;
        break;
      }
      id = chunk.id || id;
      if (chunk.sources) showSources(item, chunk.sources);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        answer += delta.content;
        text.textContent = answer;
      }
    }
  } catch (error) {
    failed = error.message;
    if (error.status === 401) {
      // Asked for the key: the question goes again once it is entered.
      userItem.remove();
      item.remove();
      $("message").value = question;
      state.retry = () => ask(question);
    }
  } finally {
    item.removeAttribute("aria-busy");
    state.busy = false;
    $("send").disabled = false;
  }
  if (failed !== null && item.isConnected) {
    showError(item, `The twin could not answer: ${failed}`);
    status("The last question failed; it was not added to the conversation.");
    return;
  }
  if (!item.isConnected) return;
  state.messages = [...sent, { role: "assistant", content: answer }];
  item.dataset.completionId = id || "";
  if (id) addFeedback(item, id);
  status("Answered.");
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const question = $("message").value.trim();
  if (!question || state.busy) return;
  $("message").value = "";
  ask(question);
});

$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});

// --- feedback ------------------------------------------------------------------------------------

function addFeedback(item, id) {
  const form = $("feedback-template").content.firstElementChild.cloneNode(true);
  const send = form.querySelector(".send-feedback");
  const note = form.querySelector(".feedback-status");
  let rating = null;
  for (const button of form.querySelectorAll(".rate")) {
    button.addEventListener("click", () => {
      rating = button.dataset.rating;
      for (const other of form.querySelectorAll(".rate")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      send.disabled = false;
      note.textContent = rating === "up" ? "Rated good: send it, with a correction if you like." : "Rated bad: send it, with what the author would have said if you can.";
    });
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!rating) return;
    const correction = form.querySelector(".correction").value.trim();
    const body = { id, rating };
    if (correction) body.correction = correction;
    send.disabled = true;
    note.textContent = "Sending…";
    try {
      const response = await api("v1/feedback", { method: "POST", headers: headers(true), body: JSON.stringify(body) });
      let saved = null;
      try {
        saved = await response.json();
      } catch (ignored) {
        saved = null;
      }
      note.textContent = `Thank you: feedback saved${saved && saved.status ? ` (${saved.status})` : ""}.`;
    } catch (error) {
      if (error.status === 404 && !(error.body && error.body.error)) {
        note.textContent = "This server does not take feedback (it has no POST /v1/feedback route).";
      } else if (error.status === 401) {
        note.textContent = "Enter the API key, then send the feedback again.";
        state.retry = () => form.requestSubmit();
      } else {
        note.textContent = `Feedback not saved: ${error.message}`;
      }
    } finally {
      send.disabled = false;
    }
  });
  item.append(form);
}

loadTwins();
