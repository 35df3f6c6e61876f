// Keeps a dashboard page live without reloading it. The counter's value comes from its event
// stream, or, where the server does not serve one, from its JSON every few seconds; when the
// value changes, the page is fetched again and its `data-live` sections are swapped in, charts
// included. The page works without this script: its figures are then those of its loading.
"use strict";
(() => {
  const POLL_MS = 5000; // polling, when there is no event stream
  const REFRESH_MS = 2000; // sections are fetched at most this often while visits come in
  const STALE_MS = 60000; // and this often anyway: uptime and the other counters move too

  const main = document.querySelector("main[data-namespace]");
  const status = document.querySelector("[data-status]");
  const counter =
    "/v1/counters/" + encodeURIComponent(main.dataset.namespace) + "/" + encodeURIComponent(main.dataset.key);
  let value = Number(main.dataset.initialValue);
  let refreshing = null;

  function show(next) {
    if (next === value) return;
    value = next;
    for (const figure of document.querySelectorAll("[data-value]")) {
      figure.textContent = next.toLocaleString("en");
    }
    refreshing = refreshing || setTimeout(refresh, REFRESH_MS);
  }

  async function refresh() {
    try {
      const answer = await fetch(location.href, { cache: "no-store" });
      if (!answer.ok) return;
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const section of fresh.querySelectorAll("[data-live]")) {
        const shown = document.getElementById(section.id);
        // Only what changed, so that focus and open tables elsewhere stay as they are.
        if (shown && shown.innerHTML !== section.innerHTML) {
          const open = shown.querySelector("details[open]");
          shown.replaceChildren(...section.childNodes);
          if (open) shown.querySelector("details").open = true;
        }
      }
    } catch {
      // The server is away: the next change or the next minute tries again.
    } finally {
      clearTimeout(refreshing);
      refreshing = null;
    }
  }

  function poll() {
    status.textContent = "Updated every " + POLL_MS / 1000 + " s";
    setInterval(async () => {
      try {
        const answer = await fetch(counter, { cache: "no-store" });
        if (answer.ok) show((await answer.json()).value);
      } catch {
        // The server is away: try again at the next round.
      }
    }, POLL_MS);
  }

  function listen() {
    const events = new EventSource(counter + "/events");
    events.addEventListener("open", () => (status.textContent = "Live"));
    events.addEventListener("value", (event) => show(JSON.parse(event.data).value));
    events.addEventListener("error", () => {
      // Closed for good (no such route, or no room for another stream): poll instead. Any other
      // error is a lost connection, which EventSource opens again by itself.
      if (events.readyState === EventSource.CLOSED) poll();
      else status.textContent = "Reconnecting…";
    });
  }

  if (window.EventSource) listen();
  else poll();
  setInterval(refresh, STALE_MS);
})();
