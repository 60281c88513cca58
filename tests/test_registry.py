"""Importing the registration list from CSV."""

from __future__ import annotations

import json
from datetime import date

import pytest

from racecheck.core.registry import (
    RegistryError,
    Runner,
    age_on,
    parse_category,
    parse_runners_csv,
)


def test_minimal_list_with_category_labels() -> None:
    # given the three required columns with every label form and gender spelling
    text = (
        "bib,gender,age_category\n"
        "31724,M,18-39\n"
        "17970,female,45-49\n"
        "500,MALE,M50-54\n"
        "501,F,W55-59\n"
        "9,m,70+\n"
    )
    # when parsed
    runners = parse_runners_csv(text)
    # then bounds come from the labels, open-ended categories have no upper bound
    assert [(r.bib, r.gender, r.age_min, r.age_max, r.category) for r in runners] == [
        ("31724", "M", 18, 39, "18-39"),
        ("17970", "F", 45, 49, "45-49"),
        ("500", "M", 50, 54, "M50-54"),
        ("501", "F", 55, 59, "W55-59"),
        ("9", "M", 70, None, "70+"),
    ]


def test_name_and_extra_columns_are_kept_semicolons_and_bom_accepted() -> None:
    # given a semicolon-separated export with a BOM, a name, extra columns and odd case
    text = "\ufeffBib;Gender;Category;Name;Club;Nation\n0042;F;18-39;Ann Lee;Berlin RC;\n"
    # when parsed
    [runner] = parse_runners_csv(text)
    # then the bib keeps its leading zero, the name is kept, empty extras are dropped
    assert runner == Runner(
        bib="0042",
        gender="F",
        age_min=18,
        age_max=39,
        category="18-39",
        name="Ann Lee",
        extra={"club": "Berlin RC"},
    )


def test_birth_date_gives_the_exact_age_on_race_day() -> None:
    # given birth dates either side of the birthday and a race on 2024-04-21
    text = "bib,gender,birth_date\n1,F,1979-04-21\n2,F,1979-04-22\n"
    # when parsed with the race date
    runners = parse_runners_csv(text, race_date=date(2024, 4, 21))
    # then age_min == age_max == age on the day
    assert [(r.age_min, r.age_max, r.category) for r in runners] == [
        (45, 45, "age 45"),
        (44, 44, "age 44"),
    ]


def test_birth_year_gives_the_two_possible_ages_and_race_date_column_wins() -> None:
    # given a birth year and a race_date column that overrides the argument
    text = "bib,gender,birth_year,race_date,age_category\n1,M,1980,2024-09-29,M40-44\n"
    # when parsed
    [runner] = parse_runners_csv(text, race_date=date(2000, 1, 1))
    # then 43 or 44 on the day; the category label is kept as given
    assert (runner.age_min, runner.age_max, runner.category) == (43, 44, "M40-44")


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_returned() -> None:
    # given a file mixing good and bad rows (line numbers count the header as 1)
    text = (
        "bib,gender,age_category\n"
        "1,M,18-39\n"
        "2,Q,18-39\n"
        "3,F,adult\n"
        ",F,18-39\n"
        "\n"
        "1,M,18-39\n"
        "6,F,M50-54\n"
        "7,F\n"
        "8,F,39-18\n"
    )
    # when parsed
    with pytest.raises(RegistryError) as raised:
        parse_runners_csv(text)
    # then every problem is listed, by line
    assert [line for line, _ in raised.value.problems] == [3, 4, 5, 7, 8, 9, 10]
    message = str(raised.value)
    assert "line 3: gender 'Q'" in message
    assert "line 4: age category 'adult'" in message
    assert "line 7: bib 1 is already listed on line 2" in message
    assert "line 8: age category 'M50-54' contradicts gender F" in message
    assert "line 9: expected 3 cells, found 2" in message


def test_birth_columns_need_a_race_date() -> None:
    with pytest.raises(RegistryError, match="line 2: a birth date/year needs a race date"):
        parse_runners_csv("bib,gender,birth_year\n1,M,1980\n")


def test_bad_birth_values_are_row_errors() -> None:
    text = "bib,gender,birth_date,birth_year\n1,M,21/04/1979,\n2,M,,80\n3,M,1800-01-01,\n"
    with pytest.raises(RegistryError) as raised:
        parse_runners_csv(text, race_date=date(2024, 4, 21))
    assert [line for line, _ in raised.value.problems] == [2, 3, 4]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("gender,age_category\nM,18-39\n", "missing column 'bib'"),
        ("bib,age_category\n1,18-39\n", "missing column 'gender'"),
        ("bib,gender\n1,M\n", "missing column 'age_category'"),
        ("bib,gender,bib,age_category\n1,M,1,18-39\n", "duplicate column(s): bib"),
    ],
)
def test_header_problems(text: str, problem: str) -> None:
    with pytest.raises(RegistryError) as raised:
        parse_runners_csv(text)
    assert problem in str(raised.value)


def test_parse_category_forms() -> None:
    assert parse_category("18-39") == (18, 39, None)
    assert parse_category(" M50 - 54 ") == (50, 54, "M")
    assert parse_category("F45\u201349") == (45, 49, "F")
    assert parse_category("70+") == (70, None, None)
    with pytest.raises(ValueError, match="unknown prefix"):
        parse_category("V45-49")


def test_age_on_birthday_boundaries() -> None:
    assert age_on(date(2000, 2, 29), date(2024, 2, 28)) == 23
    assert age_on(date(2000, 2, 29), date(2024, 2, 29)) == 24


def test_runner_round_trips_through_a_json_item() -> None:
    # given runners with and without an upper bound and a name
    runners = [
        Runner("1", "M", 18, 39, "18-39", "Bo", {"club": "X"}),
        Runner("2", "F", 70, None, "70+"),
    ]
    # when turned into plain items, through JSON, and back
    items = [json.loads(json.dumps(runner.to_item())) for runner in runners]
    # then nothing is lost and absent values are omitted, not null
    assert "age_max" not in items[1] and "name" not in items[1]
    assert [Runner.from_item(item) for item in items] == runners


@pytest.mark.parametrize("spelling", [
    "X", "x", "NB", "nb", "Non-Binary", "nonbinary", "non binary", "Non  Binary",
    "non-binaire", "D", "d", "divers", "Diverse",
])
def test_non_binary_spellings_register_as_x(spelling: str) -> None:
    # given a non-binary runner in one of the documented spellings, between two others
    text = f"bib,gender,age_category\n1,M,18-39\n2,{spelling},40-44\n3,F,18-39\n"
    # when parsed
    runners = parse_runners_csv(text)
    # then the whole list is accepted and the runner is registered X with their ages
    assert [(r.bib, r.gender, r.age_min, r.age_max) for r in runners] == [
        ("1", "M", 18, 39), ("2", "X", 40, 44), ("3", "F", 18, 39)]


def test_category_prefixes_for_non_binary_runners() -> None:
    # given X/NB category prefixes, a contradicting one, and a D prefix
    text = ("bib,gender,age_category\n1,X,X40-44\n2,NB,NB18-39\n3,M,X40-44\n"
            "4,X,M40-44\n5,F,D40-44\n")
    # when parsed
    with pytest.raises(RegistryError) as raised:
        parse_runners_csv(text)
    # then X and NB prefixes agree with an X runner, contradictions are errors either way,
    # and D is not guessed: in category labels it is as often "Damen" (women) as "divers"
    assert raised.value.problems == [
        (4, "age category 'X40-44' contradicts gender M"),
        (5, "age category 'M40-44' contradicts gender X"),
        (6, "age category 'D40-44': unknown prefix 'D'"),
    ]
    assert parse_category("NB18-39") == (18, 39, "X")


def test_a_non_binary_runner_round_trips_through_an_item() -> None:
    # given a runner registered X
    runner = Runner("7", "X", 30, 34, "X30-34", "Sam")
    # when stored as a plain item and read back
    item = json.loads(json.dumps(runner.to_item()))
    # then X is stored as such and comes back equal
    assert item["gender"] == "X"
    assert Runner.from_item(item) == runner
