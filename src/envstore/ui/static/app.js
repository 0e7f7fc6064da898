// envstore web UI: the few things a server-rendered page cannot do alone. Plain JavaScript,
// no dependencies. Every call goes to this server's own API with JSON from this origin.
"use strict";

const PREFIX = document.body.dataset.prefix || "";
const API = PREFIX + "/api/v1";
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELED"]);

async function postJSON(url, body) {
  const answer = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "Accept": "application/json"},
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await answer.json(); } catch (_) { /* not JSON: a proxy's error page */ }
  return {ok: answer.ok, status: answer.status, data};
}

function messageOf(result) {
  if (result.data && result.data.message) return result.data.message;
  return "The server answered " + result.status + "; try again in a moment.";
}

function showError(box, text) {
  box.textContent = text;
  box.hidden = false;
}

// Local times on hover; the text stays relative ("5 minutes ago").
function localiseTimes() {
  for (const node of document.querySelectorAll("time[datetime]")) {
    const when = new Date(node.getAttribute("datetime"));
    if (!isNaN(when)) node.title = when.toLocaleString();
  }
}

function setupCopy() {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const text = document.getElementById(button.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const range = document.createRange();  // no clipboard API (plain http): select it instead
      range.selectNodeContents(document.getElementById(button.dataset.copy));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => { button.textContent = "Copy"; button.classList.remove("copied"); }, 1600);
  });
}

function setupConfirm() {
  document.addEventListener("submit", (event) => {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
}

function setupSignOut() {
  const button = document.getElementById("signout");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    await postJSON(PREFIX + "/logout/", {}).catch(() => null);
    window.location.assign(PREFIX + "/ui/login/");
  });
}

function setupLogin() {
  const form = document.getElementById("login-form");
  if (!form) return;
  const box = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    box.hidden = true;
    if (!form.username.value || !form.password.value) {
      showError(box, "Enter your user name and password.");
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const next = encodeURIComponent(form.dataset.next);
      const result = await postJSON(form.action + "?next=" + next,
        {username: form.username.value, password: form.password.value});
      if (result.ok) {
        window.location.assign(result.data.data.redirect_url);
        return;
      }
      showError(box, messageOf(result));
      form.password.select();
    } catch (_) {
      showError(box, "The server cannot be reached. Check your connection and try again.");
    }
    button.disabled = false;
  });
}

// The spec editor: line numbers, and errors pointed at their line.
function setupEditor() {
  const form = document.getElementById("spec-form");
  if (!form) return;
  const text = form.specification;
  const gutter = document.getElementById("gutter");
  const box = document.getElementById("spec-error");
  let badLine = 0;
  const number = () => {
    const lines = text.value.split("\n").length;
    gutter.innerHTML = "";
    for (let n = 1; n <= lines; n++) {
      const line = document.createElement("span");
      line.textContent = String(n);
      if (n === badLine) line.className = "bad";
      gutter.append(line, "\n");
    }
    gutter.scrollTop = text.scrollTop;
  };
  text.addEventListener("input", () => { badLine = 0; number(); });
  text.addEventListener("scroll", () => { gutter.scrollTop = text.scrollTop; });
  number();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    box.hidden = true;
    badLine = 0;
    const body = {
      specification: text.value,
      namespace: form.namespace.value.trim(),
      environment_name: form.environment_name.value.trim(),
    };
    if (form.as_of.value) body.as_of = form.as_of.value + "T23:59:59";
    const button = document.getElementById("spec-submit");
    button.disabled = true;
    try {
      const result = await postJSON(API + "/specification/", body);
      if (result.ok) {
        window.location.assign(PREFIX + "/ui/build/" + result.data.data.build_id + "/");
        return;
      }
      const message = messageOf(result);
      const found = /line (\d+)/.exec(message);
      if (found) {
        badLine = Number(found[1]);
        // "... at line 5, column 1: what" reads better as "Line 5, column 1: ...: what"
        const parts = /^(.*?) at line \d+(, column \d+)?: (.*)$/s.exec(message);
        showError(box, parts
          ? "Line " + badLine + (parts[2] || "") + ": " + parts[1] + ": " + parts[3]
          : "Line " + badLine + ": " + message);
        const lines = text.value.split("\n");
        const start = lines.slice(0, badLine - 1).join("\n").length + (badLine > 1 ? 1 : 0);
        text.focus();
        text.setSelectionRange(start, start + (lines[badLine - 1] || "").length);
      } else {
        showError(box, message);
      }
      number();
    } catch (_) {
      showError(box, "The server cannot be reached. Your text is still here; try again.");
    }
    button.disabled = false;
  });
}

// A build page follows its build with the API's long polls: the log from the last offset,
// and the status, each answered as soon as something changes.
function setupBuild() {
  const root = document.getElementById("build-live");
  if (!root || TERMINAL.has(root.dataset.status)) return;
  const id = root.dataset.build;
  const log = document.getElementById("build-log");
  let offset = Number(root.dataset.offset || 0);
  let done = false;
  let failures = 0;
  const result = document.getElementById("build-result");

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const trouble = () => {
    failures += 1;
    if (failures === 3) {
      result.querySelector(".result").lastChild.textContent =
        " Lost contact with the server; still trying…";
    }
    return pause(Math.min(10000, 500 * 2 ** failures));
  };

  async function followLog() {
    while (true) {
      try {
        const answer = await fetch(`${API}/build/${id}/logs/?offset=${offset}&wait=20`,
          {credentials: "same-origin"});
        if (!answer.ok) { await trouble(); continue; }
        failures = 0;
        const chunk = await answer.text();
        offset = Number(answer.headers.get("X-Envstore-Log-Offset") || offset);
        if (chunk) {
          const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
          log.append(chunk);
          if (atEnd) log.scrollTop = log.scrollHeight;
        } else if (done) {
          return;
        }
      } catch (_) { await trouble(); }
    }
  }

  async function followStatus() {
    let status = root.dataset.status;
    while (!TERMINAL.has(status)) {
      try {
        const answer = await fetch(`${API}/build/${id}/?wait=20`, {credentials: "same-origin"});
        if (!answer.ok) { await trouble(); continue; }
        failures = 0;
        const build = (await answer.json()).data;
        if (build.status !== status) {
          status = build.status;
          const badge = document.querySelector("#build-status .status");
          badge.className = "status status-" + status.toLowerCase();
          badge.lastChild.textContent = status.charAt(0) + status.slice(1).toLowerCase();
        }
      } catch (_) { await trouble(); }
    }
    done = true;
  }

  Promise.all([followStatus(), followLog()]).then(() => {
    // The finished page is rendered by the server: packages, artifacts, the result.
    window.location.reload();
  });
}

// A page answering a form post (the new token, shown once) becomes a plain GET in the
// history: reloading it must not post the form again.
if (document.getElementById("new-token")) history.replaceState(null, "", location.pathname);

localiseTimes();
setupCopy();
setupConfirm();
setupSignOut();
setupLogin();
setupEditor();
setupBuild();
