"""worker/source/fields.py: the shape a run samples from its records (issue 14, item 2)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.source import fields
from worker.source.fields import MAX_KEY, Shape, printable
from worker.source.records import Decoder, Record
from worker.source.resources import REGISTRY


def records(*bodies: dict[str, object]) -> list[Record]:
    decoder = Decoder(REGISTRY["orders"])
    return [decoder.record(msgspec.json.encode(body), "test") for body in bodies]


def order(**extra: object) -> dict[str, object]:
    return {"id": "o-1", "updated_at": "2024-01-02T03:04:05.000Z", **extra}


def test_paths_and_json_types_are_collected_never_values() -> None:
    shape = Shape()
    shape.sample(
        records(
            order(
                billing={"total_amount": 12, "currency": None},
                stops=[{"city": "Oslo"}, {"city": 3}],
                tags=[],
                ok=True,
            )
        )
    )
    assert shape.types == {
        "id": {"string"},
        "updated_at": {"string"},
        "billing": {"object"},
        "billing.total_amount": {"number"},
        "billing.currency": {"null"},
        "stops": {"array"},
        "stops[]": {"object"},
        "stops[].city": {"string", "number"},
        "tags": {"array"},
        "ok": {"boolean"},
    }
    assert shape.sampled == 1


def test_a_page_is_sampled_its_first_record_and_every_twentieth() -> None:
    shape = Shape()
    page = [order(**{f"only_{i}": 1}) for i in range(45)]
    shape.sample(records(*page))
    assert shape.sampled == 3
    assert {p for p in shape.types if p.startswith("only_")} == {"only_0", "only_20", "only_40"}


def test_a_record_with_a_problem_is_not_sampled() -> None:
    shape = Shape()
    shape.sample(records({"no_id": True, "updated_at": "2024-01-02T03:04:05.000Z"}))
    assert shape.sampled == 0 and shape.types == {}


def test_keys_are_printable_and_bounded() -> None:
    assert printable("a\x00b\nc\\d") == "a\\x00b\\x0ac\\\\d"
    assert printable("\ud800") == "\\ud800"
    long = printable("k" * 500)
    assert len(long) == MAX_KEY and long.endswith("\u2026")
    shape = Shape()
    shape.sample(records(order(**{"bad\x00key": {"x" * 100: 1}})))
    assert "bad\\x00key" in shape.types
    assert any(p.startswith("bad\\x00key.xxx") and p.endswith("\u2026") for p in shape.types)


@given(st.text())
def test_any_key_becomes_printable_text_of_bounded_length(key: str) -> None:
    text = printable(key)
    assert text.isprintable() and len(text) <= MAX_KEY
    text.encode()  # no lone surrogate left: any database stores it


def test_the_paths_kept_per_run_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fields, "MAX_PATHS", 5)
    shape = Shape()
    shape.sample(records(order(**{f"k{i}": 1 for i in range(10)})))
    assert len(shape.types) == 5 and shape.truncated
