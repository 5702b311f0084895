// aliasflow dashboard: keeps the page live and runs the two actions. No framework.
//
// Live: every 2 s the live part of the page is re-fetched as an HTML fragment rendered
// by the same template on the server, and swapped in only when it changed (so focus and
// screen readers are left alone while nothing happens). Ages ("12 s ago") tick locally.
// Actions: POST to the JSON API with the API token, asked for once and kept in
// sessionStorage (this tab only). A 401/403 is shown in the page, never swallowed.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TOKEN_KEY = "aliasflow.apiToken";
  const live = document.getElementById("live");
  const liveState = document.getElementById("live-state");
  const notice = document.getElementById("notice");
  const announcer = document.getElementById("announcer");
  let lastHtml = null;
  let skewMs = 0; // server clock minus browser clock, from the fragment's data-now
  let timer = null;

  function age(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }

  function tickAges() {
    const now = (Date.now() + skewMs) / 1000;
    document.querySelectorAll("time[data-ts]").forEach(function (el) {
      el.textContent = age(now - parseFloat(el.dataset.ts));
    });
  }

  function readSkew() {
    const root = live && live.querySelector(".live-root[data-now]");
    if (root) skewMs = parseFloat(root.dataset.now) * 1000 - Date.now();
  }

  function states(root) {
    const out = {};
    root.querySelectorAll("[data-deployment][data-health]").forEach(function (el) {
      out[el.dataset.deployment] = el.dataset.sync + " and " + el.dataset.health;
    });
    return out;
  }

  function announce(text) {
    if (announcer) announcer.textContent = text;
  }

  function showNotice(text, ok) {
    notice.textContent = text;
    notice.className = "notice " + (ok ? "ok" : "bad");
    notice.hidden = false;
  }

  function setLive(text, offline) {
    if (!liveState) return;
    liveState.textContent = text;
    liveState.classList.toggle("offline", !!offline);
  }

  async function refresh() {
    if (!live) return;
    try {
      const response = await fetch(live.dataset.liveSrc, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
        cache: "no-store",
      });
      if (response.status === 401 || response.status === 403) {
        setLive("Session ended", true);
        showNotice("Live updates stopped: " + (await response.text()), false);
        return false;
      }
      if (!response.ok) {
        setLive("Live (server answered " + response.status + ")", true);
        return true;
      }
      const html = await response.text();
      if (html !== lastHtml) {
        const before = states(live);
        live.innerHTML = html;
        lastHtml = html;
        readSkew();
        const after = states(live);
        const changed = Object.keys(after).filter(function (name) {
          return before[name] !== undefined && before[name] !== after[name];
        });
        if (changed.length) {
          announce(changed.map(function (n) { return n + " is now " + after[n]; }).join(". "));
        }
      }
      tickAges();
      setLive("Live", false);
    } catch (err) {
      setLive("Offline: retrying", true);
    }
    return true;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async function loop() {
      const keepGoing = document.hidden ? true : await refresh();
      if (keepGoing !== false) timer = setTimeout(loop, POLL_MS);
    }, POLL_MS);
  }

  // --- token dialog --------------------------------------------------------------------

  function askToken() {
    const dialog = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    const form = document.getElementById("token-form");
    const cancel = document.getElementById("token-cancel");
    return new Promise(function (resolve) {
      input.value = "";
      function done(value) {
        form.removeEventListener("submit", onSubmit);
        cancel.removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        resolve(value);
      }
      function onSubmit(event) {
        event.preventDefault();
        const value = input.value.trim();
        if (value) {
          sessionStorage.setItem(TOKEN_KEY, value);
          done(value);
        }
      }
      function onCancel(event) {
        if (event) event.preventDefault();
        done(null);
      }
      form.addEventListener("submit", onSubmit);
      cancel.addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
      input.focus();
    });
  }

  function confirmRollback() {
    const info = document.getElementById("rollback-info");
    const dialog = document.getElementById("confirm-dialog");
    const text = document.getElementById("confirm-text");
    const ok = document.getElementById("confirm-ok");
    const cancel = document.getElementById("confirm-cancel");
    const d = info ? info.dataset : {};
    text.textContent = d.to
      ? "Move " + d.model + "@" + d.alias + " from version " + (d.from || "?") +
        " back to version " + d.to + " in MLflow? The controller then deploys it like any alias move."
      : "Move " + (d.model || "the model") + "@" + (d.alias || "alias") +
        " back to the previously served version in MLflow?";
    return new Promise(function (resolve) {
      function done(value) {
        ok.removeEventListener("click", onOk);
        cancel.removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        resolve(value);
      }
      function onOk() { done(true); }
      function onCancel(event) { if (event) event.preventDefault(); done(false); }
      ok.addEventListener("click", onOk);
      cancel.addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
      cancel.focus();
    });
  }

  // --- actions ---------------------------------------------------------------------------

  function describe(action, body, name) {
    if (action === "rollback") {
      return "Roll back accepted: " + body.model_name + "@" + body.alias + " moved from version " +
        (body.from_version || "?") + " to " + body.to_version + "; reconciling " + name + ".";
    }
    return "Sync of " + name + " accepted; it runs in the background.";
  }

  async function runAction(button) {
    const action = button.dataset.action;
    const name = button.dataset.name;
    if (action === "rollback" && !(await confirmRollback())) return;
    let token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      token = await askToken();
      if (!token) return;
    }
    button.setAttribute("aria-busy", "true");
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.url, {
        method: "POST",
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        credentials: "same-origin",
      });
      let body = {};
      try { body = await response.json(); } catch (err) { body = {}; }
      const detail = body.detail || response.statusText;
      if (response.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY); // wrong token: ask again next time
        showNotice("Refused (401): " + detail + ". Click again to enter the token.", false);
      } else if (response.status === 403) {
        showNotice("Refused (403): " + detail, false);
      } else if (!response.ok) {
        showNotice("Not done (" + response.status + "): " + detail, false);
      } else {
        showNotice(describe(action, body, name), true);
        refresh();
      }
    } catch (err) {
      showNotice("Could not reach the controller: " + err, false);
    } finally {
      button.removeAttribute("aria-busy");
      button.disabled = false;
    }
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-action]");
    if (button) runAction(button);
  });

  readSkew();
  tickAges();
  setInterval(tickAges, 1000);
  if (live) schedule();
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
})();
