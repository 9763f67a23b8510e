"""What a sales-ops admin sees for each kind of broken definition: file, line, column, message.

Each file in tests/broken/ holds one kind of mistake (several-problems.yaml holds many) and is
checked the way `duly validate tests/broken/<file>` checks it: with the shipped calendars, org
and templates in definitions/ as context. Every problem reported for the file is pinned, so a
message that gets vaguer, a location that drifts, or a follow-on problem that appears (a step
"unreachable" only because an earlier one was malformed) fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from duly.language.errors import DefinitionError
from duly.language.loader import load_paths

ROOT = Path(__file__).resolve().parent.parent
BROKEN = Path("tests/broken")

# (file in tests/broken/, every problem reported for it as (line, column, message)), in the
# order they are reported: by line, then column.
NOTIFY_FORMS = (
    "expected assignee, manager, skip-level, user:<id>, team:<team> (its members), "
    "manager-of:<team> or role:<rep|manager|admin>"
)

CASES: list[tuple[str, list[tuple[int, int, str]]]] = [
    (
        "action-unknown-with-key.yaml",
        [
            (
                13,
                7,
                "action 'email' takes no 'templte' (it takes body, cc, subject, template, "
                "to); did you mean 'template'?",
            ),
        ],
    ),
    (
        "action-unregistered.yaml",
        [
            (
                10,
                9,
                "no action named 'sms' (known: crm.note, crm.task, crm.update, email, set, "
                "webhook)",
            ),
        ],
    ),
    (
        "assign-bad-form.yaml",
        [
            (
                11,
                13,
                "'rount-robin:inbound-sales' is not understood here; expected owner, "
                "user:<id>, round-robin:<team> or least-loaded:<team>; did you mean "
                "'round-robin:inbound-sales'?",
            ),
        ],
    ),
    (
        "assign-unknown-user.yaml",
        [
            (11, 13, "unknown user 'bob' (not in org.yaml)"),
        ],
    ),
    (
        "calendar-bad-hours.yaml",
        [
            (4, 12, "'9-5' is not a range of hours; write e.g. 09:00-17:00"),
        ],
    ),
    (
        "calendar-overlapping-hours.yaml",
        [
            (
                4,
                12,
                "opening hours '09:00-13:00' and '12:00-17:00' overlap; ranges in a day must "
                "not overlap",
            ),
        ],
    ),
    (
        "calendar-unknown-holiday-country.yaml",
        [
            (
                6,
                12,
                "no public holidays known for country 'XX'; write an ISO 3166 code such as US "
                "or DE",
            ),
        ],
    ),
    (
        "calendar-unknown-timezone.yaml",
        [
            (
                2,
                11,
                "unknown time zone 'America/Boston'; write an IANA name like America/New_York",
            ),
        ],
    ),
    (
        "clock-pauses-in-unknown-step.yaml",
        [
            (
                9,
                17,
                "step 'waiting-on-customr' is not defined in steps; did you mean "
                "'waiting-on-customer'?",
            ),
        ],
    ),
    (
        "clock-stops-at-unknown.yaml",
        [
            (
                8,
                13,
                "'finishd' is neither a step of this process nor an event type like "
                "case.closed; did you mean 'finished'?",
            ),
        ],
    ),
    (
        "completed-by-task-with-fields.yaml",
        [
            (
                12,
                19,
                "an event cannot complete a task that declares 'fields' (the rep fills them "
                "in); remove 'completed_by' or the fields",
            ),
        ],
    ),
    (
        "completed-by-unknown-outcome.yaml",
        [
            (
                12,
                7,
                "'crm.call.logged' completes the task with 'reachd', which is not one of its "
                "outcomes (reached)",
            ),
        ],
    ),
    (
        "duplicate-step-id.yaml",
        [
            (12, 3, "duplicate key 'call': it is already given at line 8"),
        ],
    ),
    (
        "duration-fractional-business-days.yaml",
        [
            (
                12,
                15,
                "'1.5 business days': business days must be a whole number; write e.g. '2 "
                "business days', or use business hours such as '12 business hours'",
            ),
        ],
    ),
    (
        "duration-negative.yaml",
        [
            (12, 15, "durations must be positive, found '-2 hours'"),
        ],
    ),
    (
        "duration-typo.yaml",
        [
            (
                12,
                15,
                "'2 buisness days' is not a duration; write e.g. '45 minutes', '4 hours', '3 "
                "business hours', '2 business days' or ISO 8601 'PT4H'",
            ),
        ],
    ),
    (
        "duration-without-unit.yaml",
        [
            (12, 15, "a duration needs a unit: write '4 minutes' or '4 hours'"),
        ],
    ),
    (
        "duration-zero.yaml",
        [
            (12, 15, "duration '0 business hours' must be longer than zero"),
        ],
    ),
    (
        "email-template-missing.yaml",
        [
            (
                11,
                49,
                "no email template 'quote-sumary' in definitions/templates/; did you mean "
                "'quote-summary'?",
            ),
        ],
    ),
    (
        "expression-does-not-parse.yaml",
        [
            (11, 16, "expression does not parse: unexpected end of the expression"),
        ],
    ),
    (
        "expression-past-limits.yaml",
        [
            (
                11,
                16,
                "expression goes past the sandbox's limits: 9 ** 387420489 would have about "
                "1,162,261,467 bits (the limit is 4,096)",
            ),
            (
                15,
                12,
                "expression goes past the sandbox's limits: a repeated value would hold "
                "1,000,000,000 characters or items (the limit is 1,000,000)",
            ),
        ],
    ),
    (
        "invalid-step-id.yaml",
        [
            (
                6,
                8,
                "'Call_Customer' is not a valid id; use lowercase words joined by '-', like "
                "call-customer",
            ),
            (
                8,
                3,
                "'Call_Customer' is not a valid id; use lowercase words joined by '-', like "
                "call-customer",
            ),
        ],
    ),
    (
        "loop-without-exit.yaml",
        [
            (
                14,
                3,
                "step 'wait-a-day' has no path to an end step: an instance there could never "
                "finish",
            ),
            (
                15,
                3,
                "step 'call-again' has no path to an end step: an instance there could never "
                "finish",
            ),
        ],
    ),
    (
        "missing-kind.yaml",
        [
            (8, 3, "missing 'kind'; expected one of task, action, wait, decision, end"),
        ],
    ),
    (
        "missing-start.yaml",
        [
            (1, 1, "missing required key 'start'"),
        ],
    ),
    (
        "monitor-bad-cron.yaml",
        [
            (4, 3, "'*/15 * * *' is not a 5-field cron expression like '*/15 * * * *'"),
        ],
    ),
    (
        "monitor-threshold-both-sides.yaml",
        [
            (7, 3, "a threshold needs exactly one of 'above' or 'below'"),
        ],
    ),
    (
        "no-end-step.yaml",
        [
            (8, 3, "the process has no step of kind 'end', so it can never finish"),
        ],
    ),
    (
        "notify-unknown-target.yaml",
        [
            (14, 30, "'boss' is not understood here; " + NOTIFY_FORMS),
        ],
    ),
    (
        "template-unknown-filter.yaml",
        [
            (10, 12, "no filter named 'uper'; did you mean 'upper'?"),
            (15, 16, "no test named 'nonee'; did you mean 'none'?"),
        ],
    ),
    (
        "org-unknown-manager.yaml",
        [
            (6, 14, "unknown user 'maria' (not under users)"),
        ],
    ),
    (
        "outcomes-as-list.yaml",
        [
            (
                12,
                7,
                "expected a mapping of keys to values, found a list; write 'key: value' "
                "lines, without '- '",
            ),
        ],
    ),
    (
        "percentage-without-sign.yaml",
        [
            (14, 16, "'75' is not a percentage; write e.g. 75%"),
        ],
    ),
    (
        "rung-notify-and-reassign.yaml",
        [
            (
                14,
                11,
                "a rung needs exactly one of 'notify', 'reassign' or 'do' (a list of actions); "
                "to notify and reassign at the same moment, write "
                "do: [{notify: manager}, {reassign: manager}]",
            ),
        ],
    ),
    (
        "rung-without-action.yaml",
        [
            (
                14,
                11,
                "a rung needs exactly one of 'notify', 'reassign' or 'do' (a list of actions); "
                "to notify and reassign at the same moment, write "
                "do: [{notify: manager}, {reassign: manager}]",
            ),
        ],
    ),
    (
        "rungs-not-ascending.yaml",
        [
            (15, 16, "escalation rungs must ascend: 75% comes after 100%"),
        ],
    ),
    (
        "several-problems.yaml",
        [
            (
                4,
                11,
                "unknown calendar 'us-west' (known: eu-berlin, us-east); did you mean 'us-east'?",
            ),
            (11, 13, "unknown user 'bob' (not in org.yaml)"),
            (
                13,
                28,
                "'2 buisness days' is not a duration; write e.g. '45 minutes', '4 hours', '3 "
                "business hours', '2 business days' or ISO 8601 'PT4H'",
            ),
            (17, 16, "expression does not parse: unexpected end of the expression"),
            (
                21,
                9,
                "no action named 'sms' (known: crm.note, crm.task, crm.update, email, set, "
                "webhook)",
            ),
            (26, 5, "unknown key 'outcome'; did you mean 'outcomes'?"),
            (
                27,
                3,
                "step 'forgotten' is unreachable: no path leads to it from start 'call' or "
                "from an 'on:' event",
            ),
        ],
    ),
    (
        "steps-as-list.yaml",
        [
            (
                8,
                3,
                "expected a mapping of keys to values, found a list; write 'key: value' "
                "lines, without '- '",
            ),
        ],
    ),
    (
        "tab-indentation.yaml",
        [
            (
                9,
                1,
                "YAML syntax error: a tab character here; indent YAML with spaces, never tabs",
            ),
        ],
    ),
    (
        "template-does-not-parse.yaml",
        [
            (10, 12, "template does not parse: unexpected '}' (template line 1)"),
        ],
    ),
    (
        "trigger-bad-event-type.yaml",
        [
            (
                7,
                10,
                "'quotesent' is not an event type; write lowercase words with dots, like "
                "quote.sent",
            ),
        ],
    ),
    (
        "undefined-step-in-next.yaml",
        [
            (8, 50, "step 'call-again' is not defined in steps"),
        ],
    ),
    (
        "undefined-step-in-on-error.yaml",
        [
            (13, 15, "step 'retry-later' is not defined in steps"),
        ],
    ),
    (
        "undefined-step-in-on-event.yaml",
        [
            (7, 19, "step 'won' is not defined in steps"),
        ],
    ),
    (
        "undefined-step-in-on-timeout.yaml",
        [
            (13, 17, "step 'chase' is not defined in steps"),
        ],
    ),
    (
        "undefined-step-in-otherwise.yaml",
        [
            (12, 16, "step 'small-deal' is not defined in steps"),
        ],
    ),
    (
        "undefined-step-in-outcomes.yaml",
        [
            (12, 13, "step 'finishd' is not defined in steps; did you mean 'finished'?"),
        ],
    ),
    (
        "unknown-calendar.yaml",
        [
            (
                4,
                11,
                "unknown calendar 'us-west' (known: eu-berlin, us-east); did you mean 'us-east'?",
            ),
        ],
    ),
    (
        "unknown-key-with-suggestion.yaml",
        [
            (11, 5, "unknown key 'outcome'; did you mean 'outcomes'?"),
        ],
    ),
    (
        "unknown-start.yaml",
        [
            (6, 8, "start step 'cal' is not defined in steps; did you mean 'call'?"),
        ],
    ),
    (
        "unknown-step-kind.yaml",
        [
            (
                9,
                11,
                "unknown kind 'taks'; expected one of task, action, wait, decision, end; did "
                "you mean 'task'?",
            ),
        ],
    ),
    (
        "unknown-team.yaml",
        [
            (
                5,
                7,
                "unknown team 'inbound-sale' (not in org.yaml); did you mean 'inbound-sales'?",
            ),
        ],
    ),
    (
        "unknown-top-level-key.yaml",
        [
            (
                6,
                1,
                "unknown key 'owner'; expected one of process, title, description, version, "
                "calendar, team, goal, trigger, on, max_visits, clocks, start, steps",
            ),
        ],
    ),
    (
        "unreachable-step.yaml",
        [
            (
                12,
                3,
                "step 'send-brochure' is unreachable: no path leads to it from start 'call' "
                "or from an 'on:' event",
            ),
        ],
    ),
    (
        "version-not-a-number.yaml",
        [
            (3, 10, "expected a whole number, found 'one'"),
        ],
    ),
    (
        "wait-for-and-until.yaml",
        [
            (9, 5, "a wait needs exactly one of 'for' (a duration) or 'until' (an event)"),
        ],
    ),
    (
        "wait-until-without-timeout.yaml",
        [
            (9, 5, "a wait 'until' an event needs 'timeout' and 'on_timeout'"),
        ],
    ),
    (
        "webhook-without-url.yaml",
        [
            (11, 5, "action 'webhook' needs 'url' in 'with'"),
        ],
    ),
    (
        "webhook-url-host-from-data.yaml",
        [
            (
                12,
                12,
                "the scheme and host of a url must be written out; data may fill only the "
                "path and the query",
            ),
        ],
    ),
    (
        "yaml-alias-bomb.yaml",
        [
            (
                14,
                14,
                "the aliases up to *d copy in more than 20,000 values; aliases nested inside "
                "aliases multiply, write the values out or use fewer aliases",
            ),
        ],
    ),
    (
        "yaml-nested-too-deep.yaml",
        [
            (10, 106, "lists and mappings nested more than 100 deep"),
        ],
    ),
    (
        "yaml-recursive-alias.yaml",
        [
            (
                10,
                11,
                "the alias *r is inside the value anchored as &r, so it would contain itself "
                "for ever; copy the part you need instead",
            ),
        ],
    ),
    (
        "yaml-syntax-error.yaml",
        [
            (
                12,
                11,
                "YAML syntax error: the '{' at line 11, column 15 is not closed (expected ',' "
                "or '}', but got ':')",
            ),
        ],
    ),
    (
        "yaml-too-many-aliases.yaml",
        [
            (212, 5, "more than 200 aliases (*name) in one file"),
        ],
    ),
    (
        "org-crm-id-twice.yaml",
        [(7, 24, "hubspot id '90011' is also ana's; each CRM owner id names one user")],
    ),
    (
        "source-fetch-outside-hubspot.yaml",
        [(6, 12, "only a hubspot source can fetch records")],
    ),
    (
        "source-secret-in-file.yaml",
        [
            (
                3,
                9,
                "give the name of the DULY_* environment variable that holds the secret (e.g. "
                "DULY_HUBSPOT_CLIENT_SECRET), never the secret itself",
            )
        ],
    ),
    (
        "source-template-does-not-parse.yaml",
        [
            (7, 15, "expression does not parse: unexpected end of the expression"),
            (9, 16, "template does not parse: unexpected '}' (template line 1)"),
            (13, 19, "template does not parse: unexpected '}' (template line 1)"),
        ],
    ),
    (
        "source-unknown-crm.yaml",
        [
            (
                2,
                6,
                "expected one of hubspot, salesforce, pipedrive, standard-webhooks or duly, "
                "found 'zoho'",
            )
        ],
    ),
    (
        "source-without-secret.yaml",
        [
            (
                2,
                6,
                "a pipedrive source needs 'secret': the name of the DULY_* variable holding the "
                "webhook's HTTP Basic credentials, as user:password",
            )
        ],
    ),
    (
        "rung-do-two-things.yaml",
        [
            (
                16,
                15,
                "each entry of 'do' needs exactly one of 'notify', 'reassign', 'set' or "
                "'action', found notify and reassign",
            ),
        ],
    ),
    (
        "notify-kind-misspelt.yaml",
        [
            # a team is not an assignee: no 'did you mean user:inbound-sales'
            (
                11,
                13,
                "'team:inbound-sales' is not understood here; expected owner, user:<id>, "
                "round-robin:<team> or least-loaded:<team>",
            ),
            (
                15,
                30,
                "'tem:inbound-sales' is not understood here; "
                + NOTIFY_FORMS
                + "; did you mean 'team:inbound-sales'?",
            ),
            (16, 30, "unknown role 'admins'; expected rep, manager, admin; did you mean 'admin'?"),
            (17, 30, "unknown team 'inbound' (not in org.yaml)"),
        ],
    ),
    (
        "rung-action-unregistered.yaml",
        [
            (
                17,
                24,
                "no action named 'emial' (known: crm.note, crm.task, crm.update, email, set, "
                "webhook); did you mean 'email'?",
            ),
        ],
    ),
    (
        "field-choice-without-options.yaml",
        [(12, 17, "a 'choice' field needs its 'options', e.g. options: [yes, no]")],
    ),
    (
        "field-required-unknown-outcome.yaml",
        [
            (
                12,
                41,
                "'qualifed' is not an outcome of this task (qualified, lost); "
                "did you mean 'qualified'?",
            ),
            (
                13,
                65,
                "the default does not fit: field 'timeline' must be one of soon, later, "
                "found 'never'",
            ),
        ],
    ),
    (
        "trigger-event-and-events.yaml",
        [(7, 3, "a trigger needs exactly one of 'event' (one type) or 'events' (a list)")],
    ),
    (
        "trigger-when-does-not-parse.yaml",
        [(9, 9, "expression does not parse: unexpected '='")],
    ),
    (
        "stage-unknown.yaml",
        [
            (
                11,
                12,
                "unknown stage 'suspekt' (org.yaml declares suspect, prospect, qualified, "
                "quote, won); did you mean 'suspect'?",
            ),
            (
                13,
                22,
                "'qualifed' is not an outcome of this task (qualified, lost); "
                "did you mean 'qualified'?",
            ),
            (
                13,
                49,
                "unknown stage 'lost' (org.yaml declares suspect, prospect, qualified, quote, won)",
            ),
        ],
    ),
]


@pytest.fixture(autouse=True)
def _at_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # problems name files relative to the working directory, as `duly validate` prints them
    monkeypatch.chdir(ROOT)


def problems_for(name: str) -> list[tuple[int, int, str]]:
    path = BROKEN / name
    with pytest.raises(DefinitionError) as caught:
        load_paths([path], root="definitions")
    problems = caught.value.problems
    assert {p.file for p in problems} == {str(path)}
    return [(p.line, p.column, p.message) for p in problems]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[name for name, _ in CASES])
def test_broken_definition_reports_exactly_these_problems(
    name: str, expected: list[tuple[int, int, str]]
) -> None:
    assert problems_for(name) == expected


def test_every_broken_file_is_in_the_table() -> None:
    on_disk = sorted(p.name for p in (ROOT / BROKEN).glob("*.yaml"))
    assert on_disk == sorted(name for name, _ in CASES)
    assert len(CASES) >= 35


def test_independent_problems_in_one_file_are_all_reported_sorted_by_line() -> None:
    found = problems_for("several-problems.yaml")
    messages = [message for _, _, message in found]
    assert len(found) == 7
    for expected in (
        "unknown calendar 'us-west'",
        "unknown user 'bob'",
        "'2 buisness days' is not a duration",
        "expression does not parse",
        "no action named 'sms'",
        "unknown key 'outcome'; did you mean 'outcomes'?",
        "step 'forgotten' is unreachable",
    ):
        assert sum(expected in message for message in messages) == 1, expected
    assert [line for line, _, _ in found] == [4, 11, 13, 17, 21, 26, 27]


def test_problems_from_several_files_are_reported_together_in_file_order() -> None:
    names = ["unknown-team.yaml", "calendar-bad-hours.yaml", "action-unregistered.yaml"]
    with pytest.raises(DefinitionError) as caught:
        load_paths([BROKEN / name for name in names], root="definitions")
    files = [p.file for p in caught.value.problems]
    assert files == sorted(str(BROKEN / name) for name in names)
    report = caught.value.report().splitlines()
    assert report[0] == "3 problems found"
    assert report[1].startswith("tests/broken/action-unregistered.yaml:10:9: no action named")


def test_a_malformed_step_does_not_make_the_steps_after_it_unreachable() -> None:
    # follow-up in several-problems.yaml is set aside for its unknown key; it still leads to
    # finished, so only the step nothing leads to is called unreachable
    messages = [message for _, _, message in problems_for("several-problems.yaml")]
    assert not any("'finished' is unreachable" in message for message in messages)


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("missing-start.yaml", (1, 1, "missing required key 'start'")),
        ("unknown-top-level-key.yaml", (6, 1, "unknown key 'owner'")),
        ("unknown-key-with-suggestion.yaml", (11, 5, "unknown key 'outcome'")),
    ],
)
def test_a_malformed_part_does_not_stop_the_rest_being_checked(
    name: str, first: tuple[int, int, str], tmp_path: Path
) -> None:
    path = tmp_path / name
    text = (ROOT / BROKEN / name).read_text(encoding="utf-8")
    path.write_text(text.replace("calendar: us-east", "calendar: us-west"), encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_paths([path], root="definitions")
    found = [(p.line, p.column, p.message) for p in caught.value.problems]
    assert len(found) == 2

    def reported(line: int, column: int, text: str) -> bool:
        return any((at, col) == (line, column) and text in msg for at, col, msg in found)

    assert reported(*first)
    assert reported(4, 11, "unknown calendar 'us-west'")
