/* Live job status over a WebSocket, with reconnects. No framework; shared by the list and detail pages.
 *
 * JobSocket(path, {onMessage, onOpen}) keeps one socket open to `path`, reconnecting with
 * exponential backoff and jitter. onOpen(reconnected) runs on every open, so a page can
 * re-fetch what it shows after a gap. Close codes 4401 (signed out) and 4404 (not your job)
 * are final: retrying cannot help, so the page says why and stops.
 */
(function () {
  "use strict";

  var MAX_DELAY_MS = 10000;

  function statusBar(text) {
    var el = document.getElementById("live-status");
    if (!el) return;
    if (text) { el.textContent = text; el.hidden = false; } else { el.hidden = true; el.textContent = ""; }
  }

  function JobSocket(path, handlers) {
    this.path = path;
    this.handlers = handlers || {};
    this.failures = 0;
    this.opened = false;
    this.stopped = false;
    this.connect();
    var self = this;
    // A page restored from the back/forward cache may be stale: catch up at once.
    window.addEventListener("pageshow", function (ev) { if (ev.persisted && self.handlers.onOpen) self.handlers.onOpen(true); });
  }

  JobSocket.prototype.connect = function () {
    var self = this;
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var ws;
    try {
      ws = new WebSocket(scheme + "//" + window.location.host + this.path);
    } catch (err) {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = function () {
      var reconnected = self.opened;
      self.opened = true;
      self.failures = 0;
      statusBar("");
      if (self.handlers.onOpen) self.handlers.onOpen(reconnected);
    };
    ws.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (err) { return; }
      if (self.handlers.onMessage) self.handlers.onMessage(msg);
    };
    ws.onclose = function (ev) {
      if (self.stopped) return;
      if (ev.code === 4401) { statusBar("You are signed out: live updates stopped. Reload the page to sign in again."); return; }
      if (ev.code === 4404) { statusBar("Live updates are not available for this job."); return; }
      self.retry();
    };
  };

  JobSocket.prototype.retry = function () {
    var self = this;
    var delay = Math.min(MAX_DELAY_MS, 500 * Math.pow(2, this.failures));
    delay = delay / 2 + Math.random() * delay / 2;  // jitter: many tabs must not reconnect in step
    this.failures += 1;
    if (this.failures > 1) statusBar("Live updates paused: reconnecting…");
    window.setTimeout(function () { self.connect(); }, delay);
  };

  /* Fetches a server-rendered fragment and puts it in place of `container`'s content.
   * Serialised: a request asked for while one is in flight runs once after it. */
  function FragmentLoader(container, url) {
    this.container = container;
    this.url = url;
    this.busy = false;
    this.again = false;
    this.timer = null;
  }

  FragmentLoader.prototype.schedule = function (delayMs) {
    var self = this;
    if (this.timer) return;
    this.timer = window.setTimeout(function () { self.timer = null; self.load(); }, delayMs || 0);
  };

  FragmentLoader.prototype.load = function () {
    var self = this;
    if (this.busy) { this.again = true; return; }
    this.busy = true;
    fetch(this.url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" }, cache: "no-store" })
      .then(function (res) {
        if (res.redirected || !res.ok) throw new Error("status " + res.status);
        return res.text();
      })
      .then(function (html) {
        self.container.innerHTML = html;
        if (self.onLoad) self.onLoad();
      })
      .catch(function () { statusBar("Could not refresh this page; reload it to see the latest state."); })
      .then(function () {
        self.busy = false;
        if (self.again) { self.again = false; self.load(); }
      });
  };

  function formatBytes(n) {
    // The same units as Django's filesizeformat, so live and rendered numbers agree.
    if (n === null || n === undefined) return "";
    if (n < 1024) return n + (n === 1 ? " byte" : " bytes");
    var units = ["KB", "MB", "GB", "TB"];
    var value = n / 1024, i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return value.toFixed(1) + " " + units[i];
  }

  function formatSeconds(s) {
    if (!isFinite(s) || s < 0) return "";
    if (s < 60) return Math.ceil(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }

  window.jobplatform = { JobSocket: JobSocket, FragmentLoader: FragmentLoader, formatBytes: formatBytes,
                         formatSeconds: formatSeconds, statusBar: statusBar };
})();
