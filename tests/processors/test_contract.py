"""The processor contract: registry, parameter validation, the in-memory context."""

from __future__ import annotations

import pytest

import processors
from processors import (
    Cancelled,
    ParamsError,
    ProcessorError,
    UnknownJobType,
    get_processor,
)
from processors.testing import MemoryContext

JOB_TYPES = [
    "CSV_PROFILE",
    "CSV_ROW_COUNT",
    "JSON_CANONICALIZE",
    "PDF_EXTRACT_TEXT",
    "SHA256",
]


def test_importing_the_package_registers_every_job_type_sorted_by_name():
    names = [p.job_type for p in processors.all_processors()]
    # Other test suites may register diagnostic processors into the same registry.
    assert set(JOB_TYPES) <= set(names)
    assert names == sorted(names)


def test_unknown_job_type_lists_the_valid_ones():
    with pytest.raises(UnknownJobType) as exc:
        get_processor("NOPE")
    assert isinstance(exc.value, ProcessorError)
    assert "'NOPE'" in exc.value.message
    for name in JOB_TYPES:
        assert name in exc.value.message


def test_registering_a_different_processor_under_a_taken_name_is_refused():
    import dataclasses

    clone = dataclasses.replace(get_processor("SHA256"), title="other")
    with pytest.raises(ValueError, match="already registered"):
        processors.register(clone)


@pytest.mark.parametrize("job_type", JOB_TYPES)
def test_every_schema_is_a_closed_object_with_defaults(job_type):
    processor = get_processor(job_type)
    schema = processor.params_schema
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    for prop in schema["properties"].values():
        assert "default" in prop
    assert processor.validate_params(None) == {
        name: prop["default"] for name, prop in schema["properties"].items()
    }


def test_defaults_are_filled_and_given_values_kept():
    params = get_processor("CSV_ROW_COUNT").validate_params({"delimiter": ";"})
    assert params == {
        "delimiter": ";",
        "has_header": True,
        "quotechar": '"',
        "encoding": "utf-8",
    }


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        (
            {"colour": "red"},
            "colour",
            "unknown parameter (allowed: delimiter, encoding, has_header, quotechar)",
        ),
        ({"has_header": "yes"}, "has_header", "must be of type boolean, got 'yes'"),
        ({"delimiter": ";;"}, "delimiter", "must be exactly one character, got ';;'"),
        ({"delimiter": ""}, "delimiter", "must be exactly one character, got ''"),
        ({"delimiter": "\n"}, "delimiter", "must not be a line break"),
        ({"quotechar": ","}, "quotechar", "must differ from the delimiter"),
        ({"encoding": "klingon"}, "encoding", "unknown encoding 'klingon'"),
        ({"encoding": "rot13"}, "encoding", "'rot13' is not a text encoding"),
        ({"encoding": 8}, "encoding", "must be of type string, got 8"),
    ],
)
def test_bad_csv_params_raise_params_error_naming_the_field(params, field, fragment):
    with pytest.raises(ParamsError) as exc:
        get_processor("CSV_ROW_COUNT").validate_params(params)
    assert exc.value.code == "invalid_params"
    assert exc.value.details[field] == fragment
    assert f"{field}: {fragment}" in exc.value.message
    assert exc.value.message.startswith("Invalid parameters for CSV_ROW_COUNT: ")


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ParamsError) as exc:
        get_processor("CSV_PROFILE").validate_params(
            {"delimiter": 1, "x": 1, "has_header": 0}
        )
    assert set(exc.value.details) == {"delimiter", "x", "has_header"}


def test_params_that_are_not_an_object_are_refused():
    with pytest.raises(ParamsError) as exc:
        get_processor("SHA256").validate_params(["a"])  # type: ignore[arg-type]
    assert exc.value.details == {"params": "must be a JSON object"}


def test_json_mode_must_be_one_of_the_enum():
    with pytest.raises(ParamsError) as exc:
        get_processor("JSON_CANONICALIZE").validate_params({"mode": "yaml"})
    assert exc.value.details == {
        "mode": "must be one of 'document', 'jsonl', got 'yaml'"
    }


def test_memory_context_commits_outputs_on_clean_exit_and_aborts_on_error():
    ctx = MemoryContext(b"")
    with ctx.open_output("a.txt", "text/plain") as out:
        out.write(b"hello")
    with pytest.raises(RuntimeError), ctx.open_output("b.txt") as out:
        out.write(b"half")
        raise RuntimeError("boom")
    assert ctx.outputs == {"a.txt": b"hello"}
    assert ctx.content_types == {"a.txt": "text/plain"}
    assert ctx.aborted == ["b.txt"]


def test_memory_context_scripted_reads_are_short_and_not_seekable():
    ctx = MemoryContext(b"abcdefg", chunked_reads=[1, 2])
    assert [ctx.input.read(10) for _ in range(6)] == [
        b"a",
        b"bc",
        b"d",
        b"ef",
        b"g",
        b"",
    ]
    assert not ctx.input.seekable()


def test_memory_context_cancel_makes_the_next_progress_raise():
    ctx = MemoryContext(b"x")
    ctx.progress(1)
    ctx.cancel()
    with pytest.raises(Cancelled):
        ctx.progress(2)
    assert ctx.progress_calls == [1, 2]
