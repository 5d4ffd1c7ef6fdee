/* Live updates for the job list and the job detail page.
 *
 * The server stays the one that renders: when a job's state changes, the page re-fetches
 * its own `?fragment=1` HTML and swaps it in. Progress steps (several a second) are applied
 * in place. After a reconnect the page re-fetches too, so nothing missed stays missing.
 */
(function () {
  "use strict";
  var jp = window.jobplatform;

  function setProgress(scope, progress) {
    var bar = scope.querySelector("[data-progress-bar]");
    if (!bar || !progress || progress.percent === null || progress.percent === undefined) return;
    bar.classList.remove("indeterminate");
    bar.setAttribute("aria-valuenow", progress.percent);
    bar.firstElementChild.style.width = progress.percent + "%";
  }

  function setBadge(scope, state) {
    var badge = scope.querySelector("[data-state-badge]");
    if (!badge) return;
    badge.textContent = state;
    badge.className = "badge state-" + state;
  }

  // A job queued or claimed again has left its last error behind: the box goes at once,
  // before the re-rendered page arrives (the timeline keeps the error).
  var NEW_ATTEMPT = { CREATED: true, QUEUED: true, PROCESSING: true, COMPLETED: true };

  function clearError(scope) {
    Array.prototype.forEach.call(scope.querySelectorAll("[data-error]"), function (el) { el.remove(); });
  }

  // --- the job list ---------------------------------------------------------------------
  function initList(root) {
    var loader = new jp.FragmentLoader(root, root.getAttribute("data-fragment-url"));
    var onFirstPage = !/[?&]page=([2-9]|\d\d)/.test(root.getAttribute("data-fragment-url"));

    function apply(job) {
      var row = root.querySelector('tr[data-job-id="' + job.id + '"]');
      if (!row) {
        // A job this page does not show yet (created in another tab): newest first, so page 1.
        if (onFirstPage && !job.terminal) loader.schedule(300);
        return;
      }
      if (row.getAttribute("data-state") !== job.state) {
        row.setAttribute("data-state", job.state);
        setBadge(row, job.state);
        var attempts = row.querySelector("[data-attempts]");
        if (attempts) attempts.textContent = job.attempt + "/" + job.max_attempts;
        loader.schedule(300);  // reconcile with the server's rendering (filters, ordering)
      }
      setProgress(row, job.progress);
      var text = row.querySelector("[data-progress-text]");
      if (text && job.progress && job.progress.percent !== null) text.textContent = Math.floor(job.progress.percent) + "%";
    }

    new jp.JobSocket(root.getAttribute("data-ws"), {
      onOpen: function (reconnected) { if (reconnected) loader.schedule(0); },
      onMessage: function (msg) {
        if (msg.type === "job.update" && msg.job) apply(msg.job);
        else if (msg.type === "jobs.snapshot" && msg.jobs) msg.jobs.forEach(apply);
      }
    });
  }

  // --- one job --------------------------------------------------------------------------
  function initDetail(root) {
    var loader = new jp.FragmentLoader(root, root.getAttribute("data-fragment-url"));
    var samples = [];  // recent (time, bytes) pairs, for the rate and the ETA

    function body() { return root.querySelector("#job-body"); }
    loader.onLoad = function () { samples = []; };

    function showProgress(job) {
      var scope = body();
      var p = job.progress || {};
      setProgress(scope, p);
      var text = scope.querySelector("[data-progress-text]");
      if (text && p.total) {
        var pct = p.percent === null || p.percent === undefined ? "" : " · " + Math.floor(p.percent) + "%";
        text.textContent = jp.formatBytes(p.bytes) + " of " + jp.formatBytes(p.total) + pct;
      }
      var now = Date.now();
      samples.push([now, p.bytes]);
      while (samples.length > 2 && now - samples[0][0] > 5000) samples.shift();
      var eta = scope.querySelector("[data-eta]");
      if (!eta || samples.length < 2) return;
      var first = samples[0], last = samples[samples.length - 1];
      var rate = (last[1] - first[1]) / ((last[0] - first[0]) / 1000);
      if (rate > 0 && p.total) {
        eta.textContent = jp.formatBytes(Math.round(rate)) + "/s · about " + jp.formatSeconds((p.total - p.bytes) / rate) + " left";
      }
    }

    new jp.JobSocket(root.getAttribute("data-ws"), {
      onOpen: function (reconnected) { if (reconnected) loader.schedule(0); },
      onMessage: function (msg) {
        if (msg.type !== "job.update" || !msg.job) return;
        var current = body();
        if (!current || msg.job.id !== current.getAttribute("data-job-id")) return;
        if (msg.job.state !== current.getAttribute("data-state")) {
          // Show the new state at once, then let the server render the rest (timeline, result, buttons).
          setBadge(current, msg.job.state);
          current.setAttribute("data-state", msg.job.state);
          if (NEW_ATTEMPT[msg.job.state]) clearError(current);
          loader.schedule(0);
        } else if (msg.job.state === "PROCESSING") {
          showProgress(msg.job);
        }
      }
    });
  }

  var list = document.querySelector("[data-live-list]");
  if (list && window.WebSocket) initList(list);
  var detail = document.querySelector("[data-live-job]");
  if (detail && window.WebSocket) initDetail(detail);
})();
