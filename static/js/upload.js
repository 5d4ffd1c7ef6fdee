/* The upload form with JavaScript: only the chosen job type's options are shown, and the
 * file is streamed to /api/v1/uploads/ with a progress bar before the form is submitted
 * with the object key it got back. Without JavaScript the same form posts the file itself.
 */
(function () {
  "use strict";
  var form = document.getElementById("job-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;

  var fileInput = form.querySelector('input[type="file"][name="file"]');
  var typeSelect = form.querySelector('select[name="job_type"]');
  var objectKey = form.querySelector('input[name="object_key"]');
  var objectName = form.querySelector('input[name="object_name"]');
  var submit = form.querySelector("[data-submit]");
  var box = form.querySelector("[data-upload-progress]");
  var bar = box.querySelector(".progress");
  var text = box.querySelector("[data-upload-text]");
  var errorBox = form.querySelector("[data-upload-error]");
  var limit = parseInt(form.getAttribute("data-upload-limit"), 10) || 0;

  Array.prototype.forEach.call(document.querySelectorAll(".nojs-only"), function (el) { el.hidden = true; });
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (el) { el.hidden = false; });

  function showTypeOptions() {
    Array.prototype.forEach.call(form.querySelectorAll("fieldset[data-params-for]"), function (fs) {
      var on = fs.getAttribute("data-params-for") === typeSelect.value;
      fs.hidden = !on;
      fs.disabled = !on;  // the other types' options are not sent
    });
  }
  typeSelect.addEventListener("change", showTypeOptions);
  showTypeOptions();

  fileInput.addEventListener("change", function () {
    // A new file replaces one uploaded earlier (kept when the form came back with errors).
    objectKey.value = "";
    objectName.value = "";
    var note = form.querySelector("[data-uploaded]");
    if (note) note.hidden = true;
    showError("");
  });

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var input = form.querySelector('input[name="csrfmiddlewaretoken"]');
    return input ? input.value : "";
  }

  function setProgress(loaded, total, startedAt) {
    var pct = total ? Math.min(100, (100 * loaded) / total) : 0;
    bar.setAttribute("aria-valuenow", pct.toFixed(0));
    bar.firstElementChild.style.width = pct.toFixed(1) + "%";
    var seconds = (Date.now() - startedAt) / 1000;
    var speed = seconds > 0 ? loaded / seconds : 0;
    var fmt = window.jobplatform ? window.jobplatform.formatBytes : function (n) { return n + " bytes"; };
    text.textContent = pct.toFixed(0) + "% · " + fmt(loaded) + " of " + fmt(total) +
      (speed ? " · " + fmt(Math.round(speed)) + "/s" : "");
  }

  function errorMessage(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (err) { /* not JSON: fall through */ }
    if (xhr.status === 413) return "The file is too large.";
    if (xhr.status === 401 || xhr.status === 403) return "You are signed out or the page is stale; reload it and try again.";
    return "The upload failed (HTTP " + xhr.status + "). Try again.";
  }

  function upload(file) {
    var xhr = new XMLHttpRequest();
    var data = new FormData();
    data.append("file", file, file.name);
    var startedAt = Date.now();
    submit.disabled = true;
    fileInput.disabled = true;
    box.hidden = false;
    setProgress(0, file.size, startedAt);
    xhr.open("POST", form.getAttribute("data-upload-url"));
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (ev) { setProgress(ev.loaded, ev.lengthComputable ? ev.total : file.size, startedAt); };
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status === 201 && body && body.object_key) {
        setProgress(file.size, file.size, startedAt);
        text.textContent += " · uploaded, creating the job…";
        objectKey.value = body.object_key;
        objectName.value = body.filename || file.name;
        // The file is in storage now: submit the rest of the form without it.
        form.submit();
        return;
      }
      fail(errorMessage(xhr));
    };
    xhr.onerror = function () { fail("The upload failed: the connection was lost. Try again."); };
    xhr.onabort = function () { fail("The upload was cancelled."); };
    xhr.send(data);
  }

  function fail(message) {
    submit.disabled = false;
    fileInput.disabled = false;
    box.hidden = true;
    showError(message);
  }

  form.addEventListener("submit", function (ev) {
    var file = fileInput.files && fileInput.files[0];
    if (!file && objectKey.value) return;  // uploaded already; the form only creates the job
    ev.preventDefault();
    showError("");
    if (!file) { showError("Choose a file to process."); fileInput.focus(); return; }
    if (limit && file.size > limit) { showError("This file is larger than the limit of " + window.jobplatform.formatBytes(limit) + "."); return; }
    upload(file);
  });
})();
