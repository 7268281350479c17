/*
 * dwell tracker: sends page views and custom events to a `dwell collect` collector.
 * Plain ES2017, no dependencies, no build step. Served by the collector at GET /tracker.js.
 *
 *   <script src="https://collector.example.com/tracker.js" data-source="SOURCE_ID" async></script>
 *
 * Script-tag attributes
 *   data-source      (required) the source id the collector knows, sent as source.id
 *   data-endpoint    where to POST; default: the script's own origin + "/track"
 *   data-api-key     the source's API key, if it has one; sent as ?key=... (beacons cannot set headers)
 *   data-page-views  "off": no automatic page-view events (call dwell.page() yourself)
 *   data-hash-views  "on": a change of location.hash alone is a page view too
 *   data-flush-ms    how often queued events are sent, in ms (default 1000; at 10 events at once)
 *
 * JavaScript API (window.dwell)
 *   dwell.track(type, properties)  queue a custom event, e.g. dwell.track("add-to-cart", {sku: "A1", price: 10});
 *                                  returns the event's id
 *   dwell.page(properties)         queue a page-view event for the current URL
 *   dwell.flush()                  send the queue now (a Promise; respects a collector's Retry-After)
 *   dwell.profileId()              the profile id the collector gave this browser, or null
 *   dwell.sessionId()              this tab's session id
 *   dwell.ready                    true once the collector has answered a request with 200
 *   window "dwell:sent" event      a CustomEvent after each 200 answer; detail: the answer's JSON
 *
 *   Calls made before the script has loaded are replayed if the page sets up a queue stub:
 *     <script>window.dwell = window.dwell || {q: []}; dwell.q.push(["track", "signup", {plan: "pro"}]);</script>
 *
 * Storage
 *   localStorage   "dwell.profile"  the profile id from the collector's answer (sent from then on)
 *   sessionStorage "dwell.session"  a random id made on first use, one per tab
 *
 * Wire format: POST {endpoint}, Content-Type text/plain;charset=UTF-8 (so no CORS preflight), body JSON:
 *   {"source": {"id": "SOURCE_ID"}, "session": {"id": "..."}, "profile": {"id": "..."},   (profile: once known)
 *    "events": [{"id": "...", "type": "page-view", "properties": {...},
 *                "context": {"page": {"url", "title", "referrer", "path"}, "device": {"type": "desktop|mobile|tablet"},
 *                            "browser": {"language"}, "screen": {"width", "height"}}}, ...]}
 *   Every event carries its own full context (page.url is location.href when it happened) and a client-made
 *   id (kept across retries; time-ordered, so that dwell keeps a batch's events in order); none carries a
 *   time: the collector stamps the time of receipt.
 *   200 -> {"profile": {"id"}, "session": {"id"}, "source": {"id"}, "events": [ids], "errors": [], "warnings": []}
 *   429/503 (and network errors): the batch is retried after Retry-After seconds, else after 1s, 2s, 4s...
 *   (at most 30s), at most 3 tries. 400/401/403/413 are not retried. The queue holds at most 100 events.
 *   One request at a time goes out (by fetch), so that while no profile id is known the events that follow
 *   wait for the answer and carry the profile the collector made. When the page is hidden or left, the queue goes by navigator.sendBeacon
 *   (by fetch with keepalive while no profile is known, or if the beacon is refused); bodies stay under 60 KB.
 */
(function () {
  "use strict";
  if (window.dwell && window.dwell.loaded) return; // included twice

  const BATCH_MAX = 10;         // events per request
  const QUEUE_MAX = 100;        // events waiting; beyond it the oldest are dropped
  const BODY_MAX = 60000;       // bytes per request (keepalive and beacon bodies must stay under 64 KB)
  const MAX_TRIES = 3;          // per event
  const MAX_BACKOFF = 30000;    // ms
  const RETRY_STATUS = [429, 502, 503, 504];
  const CONTENT_TYPE = "text/plain;charset=UTF-8";
  const PROFILE_KEY = "dwell.profile", SESSION_KEY = "dwell.session";

  // --- small helpers -------------------------------------------------------------------------------
  const warned = {};
  function warnOnce(kind, message) { // at most one console line per kind of failure
    if (warned[kind]) return;
    warned[kind] = true;
    try { console.warn("dwell: " + message); } catch (e) { /* no console */ }
  }
  function safe(fn) { // never throw into the page
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { warnOnce("internal", "internal error: " + e); }
    };
  }
  function uuid() { // crypto.randomUUID needs a secure context; else 32 random hex characters
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    const b = new Uint8Array(16);
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(b);
    else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
  // Event ids are time-ordered (UUID version 7 in form, with a counter within a millisecond): a request's
  // events share its time of receipt, and dwell processes events of one time in the order of their ids, so
  // these ids keep the order the events happened in (which sets, for one, a visit's exit URL).
  let lastMs = 0, seq = 0;
  function eventId() {
    let ms = Date.now();
    if (ms > lastMs) { lastMs = ms; seq = 0; }
    else if (++seq > 0xfff) { lastMs++; seq = 0; } // more than 4096 in one ms, or the clock went back
    const t = lastMs.toString(16).padStart(12, "0").slice(-12);
    const r = uuid().replace(/-/g, "");
    return t.slice(0, 8) + "-" + t.slice(8) + "-7" + seq.toString(16).padStart(3, "0") + "-" +
      (8 | (parseInt(r[16], 16) & 3)).toString(16) + r.slice(17, 20) + "-" + r.slice(20, 32);
  }
  const memory = {}; // stands in for storage that is blocked (private mode, sandboxed iframes)
  function load(store, key) {
    try { const v = window[store].getItem(key); if (v) return v; } catch (e) { /* blocked */ }
    return memory[store + key] || null;
  }
  function save(store, key, value) {
    memory[store + key] = value;
    try { window[store].setItem(key, value); } catch (e) { warnOnce("storage", store + " unavailable; ids last for this page only"); }
    return value;
  }
  function bytes(s) { return new Blob([s]).size; }

  // --- configuration from the script tag -----------------------------------------------------------
  const script = document.currentScript || document.querySelector("script[data-source][src*='tracker.js']");
  const attr = (name) => (script && script.getAttribute("data-" + name)) || "";
  const cfg = {
    source: attr("source"),
    pageViews: attr("page-views") !== "off",
    hashViews: attr("hash-views") === "on",
    flushMs: Number(attr("flush-ms")) > 0 ? Number(attr("flush-ms")) : 1000,
  };
  if (!cfg.source) warnOnce("source", "no data-source on the script tag; the collector will refuse the events");
  let endpoint = attr("endpoint")
    ? new URL(attr("endpoint"), location.href).href
    : new URL("/track", script && script.src ? script.src : location.href).href;
  if (attr("api-key")) endpoint += (endpoint.includes("?") ? "&" : "?") + "key=" + encodeURIComponent(attr("api-key"));

  // --- ids and context -------------------------------------------------------------------------------
  function sessionId() {
    return load("sessionStorage", SESSION_KEY) || save("sessionStorage", SESSION_KEY, uuid());
  }
  function profileId() { return load("localStorage", PROFILE_KEY); }

  const ua = navigator.userAgent || "";
  const deviceType = /iPad|Tablet|PlayBook|Silk|Android(?!.*Mobi)/i.test(ua) ||
    (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1) ? "tablet"     // iPadOS says it is a Mac
    : /Mobi|iPhone|iPod|Windows Phone|Opera Mini/i.test(ua) ? "mobile" : "desktop";
  let referrer = document.referrer;  // for in-page navigations: the previous URL
  let lastUrl = location.href;
  function context() {
    return {
      page: { url: location.href, title: document.title, referrer: referrer, path: location.pathname },
      device: { type: deviceType },
      browser: { language: navigator.language || "" },
      screen: { width: screen.width, height: screen.height },
    };
  }

  // --- the queue and sending -------------------------------------------------------------------------
  const queue = [];       // {event, tries}
  let inflight = null;    // the Promise of the one fetch that flush() has out
  let flushTimer = null, retryTimer = null, failures = 0;

  function enqueue(type, properties) {
    let props;
    try { props = JSON.parse(JSON.stringify(properties || {})); } catch (e) { // a copy as of now; cycles fail
      warnOnce("bad-properties", "properties of a " + type + " event are not JSON (" + e + "); event dropped");
      return null;
    }
    const event = { id: eventId(), type: String(type), properties: props, context: context() };
    queue.push({ event: event, tries: 0 });
    if (queue.length > QUEUE_MAX) {
      queue.splice(0, queue.length - QUEUE_MAX);
      warnOnce("queue-full", "more than " + QUEUE_MAX + " events waiting; dropping the oldest");
    }
    schedule();
    return event.id;
  }
  function schedule() {
    if (inflight || retryTimer || !queue.length) return; // they call schedule() when done
    if (queue.length >= BATCH_MAX) flush();
    else if (!flushTimer) flushTimer = setTimeout(safe(flush), cfg.flushMs);
  }
  function payload(items) {
    const body = { source: { id: cfg.source }, session: { id: sessionId() } };
    const profile = profileId();
    if (profile) body.profile = { id: profile };
    body.events = items.map((it) => it.event);
    return JSON.stringify(body);
  }
  function takeBatch() { // the first events of the queue that fit in one request
    let size = bytes(payload([])) + 100, n = 0; // 100: room for a profile id that arrives meanwhile
    while (n < queue.length && n < BATCH_MAX) {
      const s = bytes(JSON.stringify(queue[n].event)) + 1;
      if (size + s > BODY_MAX) {
        if (n > 0) break;
        queue.shift(); // cannot be sent at all
        warnOnce("too-big", "an event over " + BODY_MAX + " bytes was dropped");
        continue;
      }
      size += s;
      n++;
    }
    return queue.splice(0, n);
  }

  function flush() { // one fetch at a time; the rest waits for its answer
    clearTimeout(flushTimer);
    flushTimer = null;
    if (inflight) return inflight;
    if (retryTimer || !queue.length) return Promise.resolve();
    const items = takeBatch();
    if (!items.length) return Promise.resolve();
    inflight = post(items).catch((e) => warnOnce("internal", "internal error: " + e)).then(() => { inflight = null; schedule(); });
    return inflight;
  }

  async function post(items) {
    let res;
    try {
      res = await fetch(endpoint, {
        method: "POST", body: payload(items), keepalive: true, credentials: "omit",
        headers: { "Content-Type": CONTENT_TYPE },
      });
    } catch (e) {
      return retry(items, 0, "network", "could not reach " + endpoint + " (" + e + "); will retry");
    }
    if (res.ok) {
      failures = 0;
      let data = {};
      try { data = await res.json(); } catch (e) { warnOnce("bad-json", "the collector's answer is not JSON"); }
      if (data && data.profile && data.profile.id) save("localStorage", PROFILE_KEY, String(data.profile.id));
      if (data && Array.isArray(data.errors) && data.errors.length) warnOnce("event-errors", "collector: " + JSON.stringify(data.errors));
      api.ready = true;
      window.dispatchEvent(new CustomEvent("dwell:sent", { detail: data }));
      return;
    }
    if (RETRY_STATUS.includes(res.status)) {
      return retry(items, retryAfterMs(res), "http-" + res.status, "collector answered " + res.status + "; will retry");
    }
    let why = "";
    try { why = (await res.json()).error || ""; } catch (e) { /* not JSON */ }
    warnOnce("http-" + res.status, "collector answered " + res.status + (why ? " (" + why + ")" : "") + "; events dropped");
  }
  function retryAfterMs(res) { // Retry-After in seconds or as an HTTP date; 0 if absent
    const v = res.headers.get("Retry-After");
    if (!v) return 0;
    const ms = isNaN(Number(v)) ? Date.parse(v) - Date.now() : Number(v) * 1000;
    return ms > 0 ? Math.min(ms, MAX_BACKOFF) : 0;
  }
  function retry(items, delay, kind, message) { // put the batch back in front, wait, go on
    warnOnce(kind, message);
    const keep = items.filter((it) => ++it.tries < MAX_TRIES);
    if (keep.length < items.length) warnOnce("gave-up", "events dropped after " + MAX_TRIES + " tries");
    queue.unshift(...keep);
    if (queue.length > QUEUE_MAX) queue.splice(0, queue.length - QUEUE_MAX);
    failures++;
    if (!retryTimer) {
      retryTimer = setTimeout(safe(() => { retryTimer = null; flush(); }), delay || Math.min(MAX_BACKOFF, 1000 * 2 ** (failures - 1)));
    }
  }

  // The page is hidden or left: send everything now, by beacon (it survives the page). While no profile is
  // known, by fetch with keepalive instead: if the page lives on (a tab switch), its answer still stores one.
  function flushOnHide() {
    clearTimeout(flushTimer);
    clearTimeout(retryTimer);
    flushTimer = retryTimer = null;
    for (let items = takeBatch(); items.length; items = takeBatch()) {
      const body = payload(items);
      let sent = false;
      if (profileId() && navigator.sendBeacon) {
        try { sent = navigator.sendBeacon(endpoint, new Blob([body], { type: CONTENT_TYPE })); } catch (e) { /* refused */ }
      }
      if (!sent) post(items).catch((e) => warnOnce("internal", "internal error: " + e));
    }
  }

  // --- page views --------------------------------------------------------------------------------------
  const urlKey = () => location.pathname + location.search + (cfg.hashViews ? location.hash : "");
  let lastKey = urlKey();
  function page(properties) {
    lastKey = urlKey();
    return enqueue("page-view", properties);
  }
  function onLocationChange() { // after pushState, replaceState, popstate, hashchange
    if (!cfg.pageViews || urlKey() === lastKey) return;
    referrer = lastUrl;
    lastUrl = location.href;
    page({});
  }

  // --- the public API ----------------------------------------------------------------------------------
  const api = {
    loaded: true,
    ready: false,
    version: "1",
    track: safe((type, properties) => {
      if (!type || typeof type !== "string") { warnOnce("bad-type", "dwell.track needs an event type string"); return null; }
      return enqueue(type, properties && typeof properties === "object" ? properties : {});
    }),
    page: safe((properties) => page(properties && typeof properties === "object" ? properties : {})),
    flush: safe(() => flush()),
    profileId: safe(() => profileId()),
    sessionId: safe(() => sessionId()),
  };

  safe(function start() {
    const stub = window.dwell;
    window.dwell = api;
    ["pushState", "replaceState"].forEach((name) => {
      const original = history[name];
      if (typeof original !== "function") return;
      history[name] = function () {
        const result = original.apply(this, arguments);
        safe(onLocationChange)();
        return result;
      };
    });
    window.addEventListener("popstate", safe(onLocationChange));
    window.addEventListener("hashchange", safe(onLocationChange));
    window.addEventListener("pagehide", safe(flushOnHide));
    document.addEventListener("visibilitychange", safe(() => { if (document.visibilityState === "hidden") flushOnHide(); }));
    // Back from the back-forward cache: the page was left (and its visit may have ended), so count it again.
    window.addEventListener("pageshow", safe((e) => { if (e.persisted && cfg.pageViews) page({}); }));

    if (cfg.pageViews) page({});
    const calls = stub && Array.isArray(stub.q) ? stub.q : [];
    calls.forEach(safe((call) => {
      const [method, ...args] = Array.from(call);
      if (typeof api[method] === "function") api[method](...args);
      else warnOnce("stub", "unknown queued call " + method);
    }));
  })();
})();
