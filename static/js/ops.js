/* The operator dashboard: re-fetches its server-rendered body (tiles, charts, workers) every
 * few seconds. The server answers within its broker probe's deadline even when the broker is
 * down, and FragmentLoader runs one request at a time, so refreshes never pile up. */
(function () {
  "use strict";
  var jp = window.jobplatform;
  var root = document.querySelector("[data-live-ops]");
  if (!root || !jp || !window.fetch) return;
  var loader = new jp.FragmentLoader(root, root.getAttribute("data-fragment-url"));
  var every = (parseInt(root.getAttribute("data-refresh"), 10) || 5) * 1000;

  loader.onLoad = function () { jp.statusBar(""); };
  window.setInterval(function () { if (!document.hidden) loader.schedule(0); }, every);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) loader.schedule(0); });
})();
