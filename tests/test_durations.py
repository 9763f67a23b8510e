import pytest
from pydantic import ValidationError

from duly.language.durations import Duration, parse_duration

EXAMPLES = (
    "write e.g. '45 minutes', '4 hours', '3 business hours', '2 business days' or ISO 8601 'PT4H'"
)


@pytest.mark.parametrize(
    ("text", "kind", "seconds", "days"),
    [
        ("45 minutes", "wall", 2700, 0),
        ("1 minute", "wall", 60, 0),
        ("4 hours", "wall", 14400, 0),
        ("1 hour", "wall", 3600, 0),
        ("1.5 hours", "wall", 5400, 0),
        ("2 days", "wall", 172800, 0),
        ("1 week", "wall", 604800, 0),
        ("2 weeks", "wall", 1209600, 0),
        ("30 business minutes", "business_hours", 1800, 0),
        ("3 business hours", "business_hours", 10800, 0),
        ("1 business hour", "business_hours", 3600, 0),
        ("1.5 business hours", "business_hours", 5400, 0),
        ("2 business days", "business_days", 0, 2),
        ("1 business day", "business_days", 0, 1),
        ("PT4H", "wall", 14400, 0),
        ("PT30M", "wall", 1800, 0),
        ("P2D", "wall", 172800, 0),
        ("P1DT2H", "wall", 93600, 0),
        ("PT1H30M", "wall", 5400, 0),
        ("P1W", "wall", 604800, 0),
        ("PT90S", "wall", 90, 0),
        ("PT1.5H", "wall", 5400, 0),
    ],
)
def test_accepted_forms_parse_to_kind_and_amount(text, kind, seconds, days):
    duration = parse_duration(text)
    assert (duration.kind, duration.seconds, duration.days) == (kind, seconds, days)
    assert duration.text == text
    assert str(duration) == text


@pytest.mark.parametrize(
    "text", ["  3 BUSINESS Hours ", "3 business  hours", "\t3 Business hours\n"]
)
def test_parsing_ignores_case_and_surrounding_whitespace(text):
    duration = parse_duration(text)
    assert (duration.kind, duration.seconds) == ("business_hours", 10800)
    assert duration.text == text.strip()


def test_iso_durations_ignore_case():
    assert parse_duration("pt4h").seconds == 14400


def test_duration_round_trips_through_json():
    duration = parse_duration("2 business days")
    assert Duration.model_validate(duration.model_dump(mode="json")) == duration
    assert Duration.model_validate_json(duration.model_dump_json()) == duration


def test_duration_is_frozen():
    duration = parse_duration("4 hours")
    with pytest.raises(ValidationError):
        duration.seconds = 1  # type: ignore[misc]


def test_duration_model_refuses_business_days_without_days():
    with pytest.raises(ValidationError, match="needs days >= 1"):
        Duration(kind="business_days", seconds=60, text="60 seconds")


def test_duration_model_refuses_wall_time_without_seconds():
    with pytest.raises(ValidationError, match="needs seconds >= 1"):
        Duration(kind="wall", days=2, text="2 days")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2 buisness days", f"'2 buisness days' is not a duration; {EXAMPLES}"),
        ("soon", f"'soon' is not a duration; {EXAMPLES}"),
        ("", f"'' is not a duration; {EXAMPLES}"),
        ("4", f"'4' is not a duration; {EXAMPLES}"),
        ("hours", f"'hours' is not a duration; {EXAMPLES}"),
        ("2 business weeks", f"'2 business weeks' is not a duration; {EXAMPLES}"),
        ("4h", f"'4h' is not a duration; {EXAMPLES}"),
        ("P", f"'P' is not a duration; {EXAMPLES}"),
        ("PT", f"'PT' is not a duration; {EXAMPLES}"),
        ("P1DT", f"'P1DT' is not a duration; {EXAMPLES}"),
        ("PT1.2.3H", f"'PT1.2.3H' is not a duration; {EXAMPLES}"),
        ("-2 hours", "durations must be positive, found '-2 hours'"),
        ("-1 business day", "durations must be positive, found '-1 business day'"),
        ("-PT4H", "durations must be positive, found '-PT4H'"),
        ("0 hours", "duration '0 hours' must be longer than zero"),
        ("0 business days", "duration '0 business days' must be longer than zero"),
        ("PT0S", "duration 'PT0S' must be longer than zero"),
        ("0.1 seconds", "duration '0.1 seconds' must be at least one second"),
        (
            "1.5 business days",
            "'1.5 business days': business days must be a whole number; write e.g. "
            "'2 business days', or use business hours such as '12 business hours'",
        ),
        (
            "P1M",
            "'P1M': ISO 8601 years and months have no fixed length; "
            "write days or weeks instead, e.g. 'P30D'",
        ),
        (
            "P1Y",
            "'P1Y': ISO 8601 years and months have no fixed length; "
            "write days or weeks instead, e.g. 'P30D'",
        ),
        ("99999 weeks", "'99999 weeks' is too long; durations are at most ten years"),
        ("5000 business days", "'5000 business days' is too long; durations are at most ten years"),
    ],
)
def test_rejected_forms_say_what_is_wrong(text, message):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message
