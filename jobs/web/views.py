"""Server-rendered pages: job list, upload form, job detail, downloads, dead letters.

Thin: reading goes through jobs.selectors, every change through jobs.services. The live
parts (static/js/jobs.js) re-fetch a page's `?fragment=1` rendering when a job's state
changes, so the server is the only place that decides what a page shows.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from jobs import notify, selectors
from jobs.api.throttles import JobActionThrottle, JobCreateThrottle, refusal
from jobs.errors import JobError
from jobs.models import DeadLetter, Job, JobState
from jobs.paging import EstimatedCountPaginator
from jobs.services import actions, create
from jobs.uploads.throttles import UploadThrottle
from processors import all_processors, get_processor
from processors.base import ProcessorError

from .forms import JobForm, form_upload_limit, job_type_choices, params_forms

PAGE_SIZE = 25
RESULT_PREVIEW_MAX_CHARS = 20_000


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


def _too_many(request: HttpRequest, wait: int, back: str) -> HttpResponse:
    response = render(request, "error.html", {"status": 429, "back": back,
                                              "message": f"Too many requests; try again in {wait} seconds."},
                      status=429)
    response["Retry-After"] = str(wait)
    return response


def _get_job(request: HttpRequest, job_id) -> Job:
    """The signed-in user's job; another user's job is a 404, like a missing one."""
    try:
        return selectors.job_get(user=request.user, job_id=job_id)
    except JobError:
        raise Http404("job not found") from None


# --- job list --------------------------------------------------------------------------------

@never_cache
@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    job_type = request.GET.get("type", "")
    status = 200
    try:
        jobs = selectors.job_list(user=request.user, state=state or None, job_type=job_type or None)
    except JobError as exc:
        messages.error(request, exc.message)
        jobs, status, state = Job.objects.none(), 400, ""
    # No count(*) over a long history: exact up to a bound, estimated past it.
    page = EstimatedCountPaginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = {k: v for k, v in (("state", state), ("type", job_type)) if v}
    context = {
        "page": page,
        "jobs": page.object_list,
        "state": state,
        "job_type": job_type,
        "states": JobState.values,
        "job_types": job_type_choices(),
        "filter_query": urlencode(query),
        "filtered": bool(query),
    }
    template = "jobs/_job_rows.html" if request.GET.get("fragment") else "jobs/job_list.html"
    return render(request, template, context, status=status)


def _titles() -> list[tuple[str, str]]:
    return [(p.job_type, p.title) for p in all_processors()]


# --- upload form -----------------------------------------------------------------------------

@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def job_new(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: create the job, from the posted file (no JavaScript) or from the
    object the page's script already streamed to /api/v1/uploads/ (object_key)."""
    if request.method == "GET":
        selected = request.GET.get("type") or ""
        form = JobForm(initial={"job_type": selected} if selected else None)
        return _render_new(request, form, params_forms(), selected)

    form = JobForm(request.POST, request.FILES)
    selected = request.POST.get("job_type", "")
    forms_by_type = params_forms(request.POST, selected=selected)
    params_form = next((f for f in forms_by_type if f.prefix == selected), None)
    if not form.is_valid() or params_form is None or not params_form.is_valid():
        return _render_new(request, form, forms_by_type, selected, status=400)

    params = params_form.cleaned_data
    upload = form.cleaned_data.get("file")
    object_key = form.cleaned_data.get("object_key")
    # The API's allowances, counted before anything is stored: a posted file is one upload
    # as well as one create. A refused post stores nothing; an object the page's script
    # already streamed stays, and the page re-rendered below still names it, so posting
    # again once the window has passed creates its job without a second upload.
    wait = refusal(request, JobCreateThrottle) if object_key else refusal(request, JobCreateThrottle, UploadThrottle)
    if wait is not None:
        form.add_error(None, f"Too many jobs submitted; try again in {wait} seconds.")
        response = _render_new(request, form, forms_by_type, selected, status=429)
        response["Retry-After"] = str(wait)
        return response
    try:
        if object_key:
            result = create.job_create(owner=request.user, job_type=selected, input_key=object_key, params=params,
                                         input_name=form.cleaned_data.get("object_name") or "")
        else:
            result = create.job_create_from_file(owner=request.user, job_type=selected, params=params,
                                                   fileobj=upload, filename=upload.name,
                                                   content_type=upload.content_type or "")
    except JobError as exc:
        _form_error(exc, form, params_form)
        return _render_new(request, form, forms_by_type, selected, status=exc.status)
    messages.success(request, f"Job created for {result.job.input_name}.")
    return redirect("job-detail", job_id=result.job.id)


@never_cache
@login_required
@require_POST
def job_new_validate(request: HttpRequest) -> JsonResponse:
    """The upload form's options, checked before any byte is uploaded; nothing is created.

    200 {job_type, params} with the params as POST /api/v1/jobs/ takes them, or 400 in the
    API's error shape with {field: message} details.
    """
    selected = request.POST.get("job_type", "")
    params_form = next((f for f in params_forms(request.POST, selected=selected) if f.prefix == selected), None)
    if params_form is None:
        return _json_error("unknown_job_type", f"unknown job type {selected!r}"[:200], {"job_type": "unknown"})
    if not params_form.is_valid():
        details = {name: " ".join(str(m) for m in errors) for name, errors in params_form.errors.items()}
        return _json_error("invalid_params", "some options are not valid", details)
    try:
        params = get_processor(selected).validate_params(params_form.cleaned_data)
    except ProcessorError as exc:
        return _json_error("invalid_params", exc.message, exc.details or {})
    return JsonResponse({"job_type": selected, "params": params})


def _json_error(code: str, message: str, details: dict) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "details": details}}, status=400)


def _form_error(exc: JobError, form: JobForm, params_form) -> None:
    if exc.code == "invalid_params" and exc.details:
        params_form.add_params_errors(exc.details)
    elif exc.code == "unknown_job_type":
        form.add_error("job_type", exc.message)
    elif exc.code in ("input_not_found", "invalid_input"):
        # The uploaded object is gone or not theirs: the file must be chosen again.
        form.data = form.data.copy()
        form.data["object_key"] = form.data["object_name"] = ""
        form.add_error("file", f"{exc.message}; choose the file again.")
    else:
        form.add_error(None, exc.message)


def _render_new(request, form: JobForm, forms_by_type, selected: str, status: int = 200) -> HttpResponse:
    if not selected and forms_by_type:
        selected = forms_by_type[0].prefix
    object_key = form.data.get("object_key", "") if form.is_bound else ""
    context = {
        "form": form,
        "params_forms": forms_by_type,
        "selected": selected,
        "upload_url": "/api/v1/uploads/",
        "uppy_endpoint": "/api/v1/uploads",
        "form_limit": form_upload_limit(),
        "upload_limit": settings.UPLOAD_MAX_BYTES,
        "object_key": object_key,
        "object_name": form.data.get("object_name", "") if object_key else "",
    }
    return render(request, "jobs/job_new.html", context, status=status)


# --- job detail and actions ------------------------------------------------------------------

@never_cache
@login_required
def job_detail(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job(request, job_id)
    context = _detail_context(job)
    template = "jobs/_job_body.html" if request.GET.get("fragment") else "jobs/job_detail.html"
    return render(request, template, context)


def _detail_context(job: Job) -> dict:
    preview = None
    if job.result is not None:
        text = json.dumps(job.result, indent=2, ensure_ascii=False, sort_keys=True)
        preview = text if len(text) <= RESULT_PREVIEW_MAX_CHARS else None
    outputs = [key.rsplit("/", 1)[-1] for key in job.result_keys] if job.state == JobState.COMPLETED else []
    refusal = actions.job_retry_refusal(job=job)
    return {
        "job": job,
        "title": dict(_titles()).get(job.job_type, job.job_type),
        "events": list(job.events.all()),
        "payload": notify.job_payload(job),
        "result_preview": preview,
        "result_too_large": job.result is not None and preview is None,
        "outputs": [name for name in outputs if name != "result.json"],
        "has_result": "result.json" in outputs,
        "params_json": json.dumps(job.params, indent=2, ensure_ascii=False, sort_keys=True),
        "can_cancel": not job.is_terminal and not job.cancel_requested,
        "can_retry": job.is_terminal and refusal is None,
        "retry_refusal": refusal if job.state == JobState.FAILED else None,
    }


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job(request, job_id)
    wait = refusal(request, JobActionThrottle)
    if wait is not None:
        return _too_many(request, wait, reverse("job-detail", args=[job.id]))
    try:
        job = actions.job_cancel(job=job, actor=_actor(request))
    except JobError as exc:
        messages.error(request, exc.message)
    else:
        if job.state == JobState.CANCELLED:
            messages.success(request, "Job cancelled.")
        else:
            messages.info(request, "Cancelling: the worker stops at its next chunk.")
    return redirect("job-detail", job_id=job.id)


@login_required
@require_POST
def job_retry(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job(request, job_id)
    wait = refusal(request, JobActionThrottle)
    if wait is not None:
        return _too_many(request, wait, reverse("job-detail", args=[job.id]))
    try:
        actions.job_retry(job=job, actor=_actor(request))
    except JobError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Job queued again.")
    return redirect("job-detail", job_id=job.id)


@login_required
def job_download(request: HttpRequest, job_id) -> HttpResponse:
    """Redirects to a short-lived presigned URL: ?output=<name> for another output,
    ?which=input for the uploaded file, else result.json."""
    job = _get_job(request, job_id)
    which = "input" if request.GET.get("which") == "input" else "result"
    output = request.GET.get("output") or None
    try:
        url, _expires = actions.job_download_url(job=job, which=which, output=output)
    except JobError as exc:
        return render(request, "error.html", {"status": exc.status, "message": exc.message,
                                              "back": reverse("job-detail", args=[job.id])}, status=exc.status)
    return HttpResponseRedirect(url)


# --- dead letters (staff) ----------------------------------------------------------------------

def _require_staff(request: HttpRequest) -> None:
    # Not a 403: to a non-staff user the page does not exist.
    if not request.user.is_staff:
        raise Http404("not found")


@never_cache
@login_required
def dead_letter_list(request: HttpRequest) -> HttpResponse:
    _require_staff(request)
    pending = request.GET.get("pending") == "1"
    letters = selectors.dead_letter_list(pending_only=pending)
    page = EstimatedCountPaginator(letters, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "jobs/dead_letters.html", {"page": page, "letters": page.object_list, "pending": pending})


@login_required
@require_POST
def dead_letter_replay(request: HttpRequest, letter_id: int) -> HttpResponse:
    _require_staff(request)
    letter = get_object_or_404(DeadLetter, pk=letter_id)
    wait = refusal(request, JobActionThrottle)
    if wait is not None:
        return _too_many(request, wait, reverse("dead-letter-list"))
    try:
        job = actions.dead_letter_replay(dead_letter=letter, actor=f"staff:{request.user.pk}")
    except JobError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Job {job.id} queued again.")
    return redirect("dead-letter-list")

