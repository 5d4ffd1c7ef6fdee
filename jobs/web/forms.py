"""Forms of the web pages. The params form is built from a processor's JSON Schema.

Schema to field: boolean -> checkbox, enum -> select, integer/number -> number input,
string -> text input; defaults are the initial values. Each job type's params form has
the type as its prefix (`CSV_ROW_COUNT-delimiter`), so the page can show every type's
options at once without JavaScript and the view reads only the chosen type's.
"""

from __future__ import annotations

from django import forms
from django.conf import settings

import storage
from processors import Processor, all_processors


def job_type_choices() -> list[tuple[str, str]]:
    return [(p.job_type, f"{p.title} ({p.job_type})") for p in all_processors()]


class JobForm(forms.Form):
    """The part of the upload form that is the same for every job type."""

    job_type = forms.ChoiceField(label="Job type", choices=())
    # Without JavaScript the file comes in this request; with it, the page has already
    # streamed it to /api/v1/uploads/ and sends only the object key it got back.
    file = forms.FileField(label="File", required=False, allow_empty_file=True)
    object_key = forms.CharField(required=False, max_length=1024, widget=forms.HiddenInput)
    object_name = forms.CharField(required=False, max_length=255, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["job_type"].choices = job_type_choices()

    def clean_object_name(self) -> str:
        # The page's script sends the name back; it is user text like any upload's name.
        name = self.cleaned_data.get("object_name") or ""
        return storage.safe_filename(name, default="") if name else ""

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if cleaned.get("object_key"):
            return cleaned
        if upload is None:
            self.add_error("file", "Choose a file to process.")
        elif upload.size > form_upload_limit():
            self.add_error("file", f"This file is {upload.size:,} bytes; without JavaScript the limit is "
                                   f"{form_upload_limit():,} bytes. Enable JavaScript to upload larger files.")
        return cleaned


def form_upload_limit() -> int:
    """Largest file the no-JavaScript form takes: one Django keeps in memory."""
    return settings.FILE_UPLOAD_MAX_MEMORY_SIZE


class ParamsForm(forms.Form):
    """One job type's parameters."""

    def __init__(self, processor: Processor, *args, **kwargs):
        kwargs.setdefault("prefix", processor.job_type)
        super().__init__(*args, **kwargs)
        self.processor = processor
        schema = processor.params_schema or {}
        required = set(schema.get("required", ()))
        for name, prop in (schema.get("properties") or {}).items():
            self.fields[name] = _field_for(name, prop, name in required)

    def clean(self):
        cleaned = super().clean()
        # An empty optional text box means "the default", not an empty string.
        return {k: v for k, v in cleaned.items() if not (v in ("", None) and not self.fields[k].required)}

    def add_params_errors(self, details: dict) -> None:
        """Puts a ParamsError's {field: message} next to the fields (or on the form)."""
        for name, message in details.items():
            self.add_error(name if name in self.fields else None, str(message))


class EscapedCharField(forms.CharField):
    r"""A one-character field that also takes \t for a tab, which a text box cannot hold."""

    def to_python(self, value):
        value = super().to_python(value)
        return "\t" if value == "\\t" else value


def _field_for(name: str, prop: dict, required: bool) -> forms.Field:
    label = prop.get("title") or name.replace("_", " ").capitalize()
    common = {"label": label, "help_text": prop.get("description", ""), "required": required}
    if "default" in prop:
        common["initial"] = prop["default"]
    kind = prop.get("type")
    if "enum" in prop:
        values = {str(v): v for v in prop["enum"]}
        return forms.TypedChoiceField(choices=[(k, k) for k in values], coerce=values.__getitem__,
                                      empty_value=None, **common)
    if kind == "boolean":
        return forms.BooleanField(**{**common, "required": False})
    if kind == "integer":
        return forms.IntegerField(min_value=prop.get("minimum"), max_value=prop.get("maximum"), **common)
    if kind == "number":
        field = forms.FloatField(min_value=prop.get("minimum"), max_value=prop.get("maximum"), **common)
        field.widget.attrs["step"] = "any"
        return field
    max_length = min(int(prop.get("maxLength", 10_000)), 10_000)
    if prop.get("maxLength") == 1:
        common["help_text"] = (common["help_text"] + r" Type \t for a tab.").strip()
        return EscapedCharField(max_length=2, strip=False, **common)
    # Whitespace can be meaningful (a space as delimiter), so nothing is stripped.
    field = forms.CharField(max_length=max_length, strip=False, **common)
    field.widget.attrs["size"] = min(max_length, 40)
    return field


def params_forms(data=None, *, selected: str | None = None) -> list[ParamsForm]:
    """One params form per job type; only the selected one is bound to the posted data."""
    return [ParamsForm(p, data if p.job_type == selected else None) for p in all_processors()]
