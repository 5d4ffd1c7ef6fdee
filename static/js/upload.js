/* The upload form with JavaScript: Uppy (static/vendor/uppy) sends each file straight to
 * object storage in parts, through the Companion-shaped routes under /api/v1/uploads/s3/.
 * The options are checked (POST /upload/validate) before a byte is sent; each finished
 * upload becomes a job (POST /api/v1/jobs/). Parts survive a dropped network (Uppy waits
 * for the browser to come back online) and a reload (Golden Retriever keeps the upload's id,
 * and the parts already stored are listed and skipped). Without JavaScript the same form
 * posts one small file itself.
 */
(function () {
  "use strict";
  var form = document.getElementById("job-form");
  if (!form || !window.Uppy || !window.fetch) return;

  var fileInput = form.querySelector('input[type="file"][name="file"]');
  var typeSelect = form.querySelector('select[name="job_type"]');
  var submit = form.querySelector("[data-submit]");
  var box = form.querySelector("[data-upload-progress]");
  var bar = box.querySelector(".progress");
  var text = box.querySelector("[data-upload-text]");
  var errorBox = form.querySelector("[data-upload-error]");
  var created = form.querySelector("[data-created-jobs]");
  var limit = parseInt(form.getAttribute("data-upload-limit"), 10) || null;
  var jp = window.jobplatform || {};
  var fmt = jp.formatBytes || function (n) { return n + " bytes"; };
  var fmtSeconds = jp.formatSeconds || function (s) { return Math.round(s) + " s"; };

  Array.prototype.forEach.call(document.querySelectorAll(".nojs-only"), function (el) { el.hidden = true; });
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (el) { el.hidden = false; });
  fileInput.hidden = true;
  fileInput.required = false;
  fileInput.multiple = true;

  function showTypeOptions() {
    Array.prototype.forEach.call(form.querySelectorAll("fieldset[data-params-for]"), function (fs) {
      var on = fs.getAttribute("data-params-for") === typeSelect.value;
      fs.hidden = !on;
      fs.disabled = !on;  // the other types' options are not sent
    });
  }
  typeSelect.addEventListener("change", showTypeOptions);
  showTypeOptions();

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

  var uppy = new Uppy.Uppy({
    id: "job-upload",
    autoProceed: false,
    restrictions: { maxFileSize: limit, minFileSize: 1 },
  });
  uppy.use(Uppy.Dashboard, {
    inline: true,
    target: form.querySelector("[data-uppy]"),
    width: "100%",
    height: 300,
    hideUploadButton: true,  // the form's own button checks the options first
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
    note: "Empty files: use the API's PUT /api/v1/uploads/<name>.",
  });
  var endpoint = form.getAttribute("data-uppy-endpoint");

  function base64(buffer) {
    var bytes = new Uint8Array(buffer), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return window.btoa(s);
  }

  // Companion's sign route plus the part's SHA-256, so that the store refuses a part that
  // arrives changed. crypto.subtle exists only on https and localhost; elsewhere parts go
  // unsigned by checksum, as with Uppy's own signPart.
  function signPart(file, opts) {
    var query = new URLSearchParams({ key: opts.key });
    var digest = window.crypto && window.crypto.subtle && opts.body
      ? opts.body.arrayBuffer().then(function (bytes) { return window.crypto.subtle.digest("SHA-256", bytes); })
      : Promise.resolve(null);
    return digest.then(function (sum) {
      if (sum) query.set("checksumSHA256", base64(sum));
      return fetch(endpoint + "/s3/multipart/" + encodeURIComponent(opts.uploadId) + "/" + opts.partNumber + "?" + query, {
        credentials: "same-origin", signal: opts.signal,
        headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" },
      });
    }).then(function (res) {
      return res.json().then(function (body) {
        if (!res.ok) throw new Error(apiError(body, res.status));
        return body;
      });
    });
  }

  uppy.use(Uppy.AwsS3, {
    endpoint: endpoint,
    headers: { "X-CSRFToken": csrfToken() },
    shouldUseMultipart: true,  // every upload is resumable
    allowedMetaFields: ["size"],
    signPart: signPart,
  });
  uppy.use(Uppy.GoldenRetriever, { serviceWorker: false });

  fileInput.addEventListener("change", function () {
    Array.prototype.forEach.call(fileInput.files, function (file) {
      try {
        uppy.addFile({ name: file.name, type: file.type, data: file, source: "form" });
      } catch (err) { showError(err.message); }
    });
    fileInput.value = "";
  });

  uppy.on("file-added", function (file) {
    uppy.setFileMeta(file.id, { size: file.size });
    showError("");
  });

  // Overall progress, speed and time left, across every file of this upload.
  var startedAt = 0;
  function setProgress() {
    var total = 0, sent = 0;
    uppy.getFiles().forEach(function (f) {
      if (!f.progress || !f.progress.uploadStarted) return;
      total += f.size || 0;
      sent += f.progress.bytesUploaded || 0;
    });
    var pct = total ? Math.min(100, Math.floor((100 * sent) / total)) : 0;
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    var seconds = (Date.now() - startedAt) / 1000;
    var speed = seconds > 0 ? sent / seconds : 0;
    var line = pct + "% · " + fmt(sent) + " of " + fmt(total);
    if (speed && sent < total) line += " · " + fmt(Math.round(speed)) + "/s · about " + fmtSeconds((total - sent) / speed) + " left";
    if (!navigator.onLine) line += " · offline, waiting for the network";
    text.textContent = line;
  }
  uppy.on("upload-progress", setProgress);
  window.addEventListener("offline", setProgress);
  window.addEventListener("online", setProgress);

  function apiError(body, status) {
    if (body && body.error && body.error.message) return body.error.message;
    return "The request failed (HTTP " + status + ").";
  }

  function showParamErrors(prefix, details) {
    Array.prototype.forEach.call(form.querySelectorAll("[data-param-error]"), function (el) { el.remove(); });
    Object.keys(details || {}).forEach(function (name) {
      var input = form.querySelector('[name="' + prefix + "-" + name + '"]');
      if (!input) return;
      var p = document.createElement("p");
      p.className = "field-error";
      p.setAttribute("role", "alert");
      p.setAttribute("data-param-error", "");
      p.textContent = details[name];
      input.closest(".param").appendChild(p);
    });
  }

  function validateOptions() {
    var data = new FormData(form);
    data.delete("file");
    return fetch(form.getAttribute("data-validate-url"), {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" },
    }).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (body) {
        if (!res.ok) {
          if (body && body.error) showParamErrors(typeSelect.value, body.error.details);
          throw new Error(apiError(body, res.status));
        }
        showParamErrors(typeSelect.value, {});
        return body;
      });
    });
  }

  function addJobLink(name, job, message) {
    var li = document.createElement("li");
    if (job) {
      var a = document.createElement("a");
      a.href = "/jobs/" + job.id + "/";
      a.textContent = name;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" · " + job.state));
      li.setAttribute("data-job-id", job.id);
    } else {
      li.textContent = name + " · " + message;
      li.className = "field-error";
    }
    created.appendChild(li);
    created.hidden = false;
  }

  // The options travel with each file (its meta), so a file restored after a reload still
  // becomes the job it was meant to be.
  uppy.on("upload-success", function (file, response) {
    setProgress();  // the file's last bytes are counted once the part is confirmed
    var key = response && response.body && response.body.key;
    var options = JSON.parse(file.meta.jobOptions || "null");
    if (!key || !options) { addJobLink(file.name, null, "uploaded, but its job options are lost"); return; }
    fetch(form.getAttribute("data-jobs-url"), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken(),
                 "Idempotency-Key": "upload:" + key },
      body: JSON.stringify({ job_type: options.job_type, input_object_key: key, params: options.params }),
    }).then(function (res) {
      return res.json().then(function (body) {
        if (!res.ok) throw new Error(apiError(body, res.status));
        addJobLink(file.name, body);
      });
    }).catch(function (err) { addJobLink(file.name, null, err.message); });
  });

  uppy.on("restored", function () {
    showError("");
    text.textContent = "An upload was interrupted. Choose the same files again if they are missing, then press " +
      "\u201c" + submit.textContent + "\u201d to go on from the parts already stored.";
    box.hidden = false;
  });

  uppy.on("upload-error", function (file, error) {
    showError((file ? file.name + ": " : "") + error.message);
  });

  uppy.on("complete", function (result) {
    submit.disabled = false;
    if (!result || result.failed.length || !result.successful.length) return;
    var single = result.successful.length === 1 && uppy.getFiles().length === 1;
    // Done files leave the Dashboard (and the browser's saved state): their jobs are listed.
    uppy.clear();
    // One file: follow its job live on its own page, once the job exists.
    if (single) {
      var wait = setInterval(function () {
        var link = created.querySelector("li[data-job-id] a");
        if (link) { clearInterval(wait); window.location.assign(link.href); }
      }, 100);
    }
  });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    showError("");
    if (!uppy.getFiles().length) { showError("Choose a file to process."); return; }
    submit.disabled = true;
    validateOptions().then(function (options) {
      uppy.getFiles().forEach(function (f) {
        if (!f.progress.uploadComplete) uppy.setFileMeta(f.id, { jobOptions: JSON.stringify(options) });
      });
      startedAt = Date.now();
      box.hidden = false;
      setProgress();
      // An upload a reload interrupted (Golden Retriever restored it): carry it on from the
      // parts already stored, as the Dashboard's own resume does.
      if (uppy.getState().recoveredState) {
        uppy.emit("restore-confirmed");
        return null;
      }
      return uppy.upload();
    }).catch(function (err) {
      submit.disabled = false;
      showError(err.message);
    });
  });
})();
