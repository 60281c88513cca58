"""The registration list: who is registered on which bib, with gender and age bounds.

CSV format (header row required, column names case-insensitive, comma, semicolon or tab
separated, UTF-8 with or without BOM):

| column | required | meaning |
| --- | --- | --- |
| ``bib`` (or ``bib_number``) | yes | the number as printed; kept as text (``0042`` stays) |
| ``gender`` (or ``sex``) | yes | ``M``/``F``/``X`` and their spellings (see below) |
| ``age_category`` (or ``category``) | one of | ``18-39``, ``M50-54``, ``W45-49``, ``70+`` |
| ``birth_date`` (``YYYY-MM-DD``) or ``birth_year`` | one of | with a race date |
| ``race_date`` (``YYYY-MM-DD``) | with a birth column | overrides the ``race_date`` argument |
| ``name`` | no | kept for reviewers |
| anything else | no | kept, as text, in ``Runner.extra`` (empty cells dropped) |

Gender, any case: ``M`` (``male``, ``man``), ``F`` (``female``, ``W``, ``woman``) or ``X``
for a non-binary division (``NB``, ``non-binary``, ``nonbinary``, ``non binary``,
``non-binaire``, and German exports' ``D``/``divers``/``diverse``). A runner registered
``X`` has no gender to compare a face with: the rules compare only the age.

Age bounds: a category label gives its bounds (``70+`` has no upper bound). A birth date
gives the exact age on the race date (``age_min == age_max``); a birth year alone gives the
two ages the runner may have on race day (``race_year - birth_year - 1`` to
``race_year - birth_year``). When both a category and a birth column are present the birth
column sets the bounds (it is more precise) and the category label is kept as given. A
gender letter in a category label (``M50-54``) must agree with the gender column.

Every bad row is reported with its line number in one ``RegistryError``, and nothing is
returned when any row is bad; a bib listed twice is an error on the second line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

Gender = Literal["M", "F", "X"]
NON_BINARY: Gender = "X"

BIB_COLUMNS = ("bib", "bib_number")
GENDER_COLUMNS = ("gender", "sex")
CATEGORY_COLUMNS = ("age_category", "category")
BIRTH_DATE_COLUMN = "birth_date"
BIRTH_YEAR_COLUMN = "birth_year"
RACE_DATE_COLUMN = "race_date"
NAME_COLUMN = "name"

_GENDERS: dict[str, Gender] = {
    "m": "M", "male": "M", "man": "M",
    "f": "F", "female": "F", "w": "F", "woman": "F",
    # Races with a non-binary division register it as X (Boston, New York, London); other
    # exports spell it out, and German ones use D ("divers", the third legal gender).
    "x": "X", "nb": "X", "non-binary": "X", "nonbinary": "X", "non binary": "X",
    "non-binaire": "X", "d": "X", "divers": "X", "diverse": "X",
}
# In category labels D is ambiguous: German-speaking orienteering and Swiss lists write
# women's classes as D40 ("Damen"). A D-prefixed label stays an error rather than a guess.
_CATEGORY_PREFIXES = {text: gender for text, gender in _GENDERS.items() if text != "d"}
_RANGE_LABEL = re.compile(
    r"^(?P<prefix>[A-Za-z]*)\s*(?P<low>\d{1,3})\s*[-\u2013]\s*(?P<high>\d{1,3})$"
)
_OPEN_LABEL = re.compile(r"^(?P<prefix>[A-Za-z]*)\s*(?P<low>\d{1,3})\s*\+$")
_MAX_AGE = 120


class RegistryError(ValueError):
    """The registration list has bad rows; ``problems`` lists ``(line, message)``."""

    def __init__(self, problems: list[tuple[int, str]]):
        self.problems = problems
        lines = "\n".join(f"line {line}: {message}" for line, message in problems)
        super().__init__(f"{len(problems)} problem(s) in the registration list:\n{lines}")


@dataclass(frozen=True)
class Runner:
    bib: str
    gender: Gender
    age_min: int
    age_max: int | None
    category: str
    name: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        """A plain JSON-able dict; ``age_max`` and ``name`` are absent when None."""
        item: dict[str, Any] = {
            "bib": self.bib,
            "gender": self.gender,
            "age_min": self.age_min,
            "category": self.category,
            "extra": dict(self.extra),
        }
        if self.age_max is not None:
            item["age_max"] = self.age_max
        if self.name is not None:
            item["name"] = self.name
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Runner:
        gender = parse_gender(str(item["gender"]))
        if gender is None:
            raise ValueError(f"bib {item.get('bib')}: unknown gender {item['gender']!r}")
        age_max = item.get("age_max")
        name = item.get("name")
        return cls(
            bib=str(item["bib"]),
            gender=gender,
            # DynamoDB hands numbers back as Decimal.
            age_min=int(item["age_min"]),
            age_max=None if age_max is None else int(age_max),
            category=str(item.get("category", "")),
            name=None if name is None else str(name),
            extra={str(key): str(value) for key, value in (item.get("extra") or {}).items()},
        )


def parse_gender(text: str) -> Gender | None:
    """``"Non-Binary"`` -> ``"X"``; None for a value that is not a known spelling."""
    return _GENDERS.get(" ".join(text.split()).lower())


def parse_category(label: str) -> tuple[int, int | None, Gender | None]:
    """``"M50-54"`` -> ``(50, 54, "M")``; ``"70+"`` -> ``(70, None, None)``."""
    text = label.strip()
    match = _RANGE_LABEL.match(text) or _OPEN_LABEL.match(text)
    if match is None:
        raise ValueError(
            f"age category {label!r} is not like 18-39, M50-54 or 70+"
        )
    prefix = match.group("prefix").lower()
    prefix_gender = _CATEGORY_PREFIXES.get(prefix) if prefix else None
    if prefix and prefix_gender is None:
        raise ValueError(f"age category {label!r}: unknown prefix {match.group('prefix')!r}")
    low = int(match.group("low"))
    high = int(match["high"]) if "high" in match.re.groupindex else None
    if high is not None and high < low:
        raise ValueError(f"age category {label!r}: upper bound below lower bound")
    if low > _MAX_AGE:
        raise ValueError(f"age category {label!r}: implausible age")
    return low, high, prefix_gender


def age_on(birth: date, race_day: date) -> int:
    before_birthday = (race_day.month, race_day.day) < (birth.month, birth.day)
    return race_day.year - birth.year - int(before_birthday)


def parse_runners_csv(text: str, *, race_date: date | None = None) -> list[Runner]:
    """Parse a whole registration list, or raise ``RegistryError`` listing every bad row."""
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise RegistryError([(1, "the file is empty: expected a header row")])
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_sniff_dialect(text))
    header = next(reader)
    columns = [name.strip().lower() for name in header]
    problems: list[tuple[int, str]] = _header_problems(columns)
    if problems:
        raise RegistryError(problems)

    runners: list[Runner] = []
    first_line_of_bib: dict[str, int] = {}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append((reader.line_num, f"unreadable CSV: {error}"))
            break
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            problems.append((line, f"expected {len(columns)} cells, found {len(cells)}"))
            continue
        row = dict(zip(columns, (cell.strip() for cell in cells), strict=True))
        try:
            runner = _runner_from_row(row, race_date)
        except ValueError as error:
            problems.append((line, str(error)))
            continue
        if runner.bib in first_line_of_bib:
            problems.append(
                (line, f"bib {runner.bib} is already listed on line "
                       f"{first_line_of_bib[runner.bib]}")
            )
            continue
        first_line_of_bib[runner.bib] = line
        runners.append(runner)
    if problems:
        raise RegistryError(problems)
    return runners


def _sniff_dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    first_line = text.splitlines()[0]
    try:
        return csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _first_present(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in columns), None)


def _header_problems(columns: list[str]) -> list[tuple[int, str]]:
    problems = []
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        problems.append((1, f"duplicate column(s): {', '.join(duplicated)}"))
    if _first_present(columns, BIB_COLUMNS) is None:
        problems.append((1, "missing column 'bib'"))
    if _first_present(columns, GENDER_COLUMNS) is None:
        problems.append((1, "missing column 'gender'"))
    has_birth = BIRTH_DATE_COLUMN in columns or BIRTH_YEAR_COLUMN in columns
    if _first_present(columns, CATEGORY_COLUMNS) is None and not has_birth:
        problems.append(
            (1, "missing column 'age_category' (or 'birth_date'/'birth_year' with a race date)")
        )
    return problems


def _runner_from_row(row: dict[str, str], race_date: date | None) -> Runner:
    reasons: list[str] = []
    bib_column = _first_present(list(row), BIB_COLUMNS)
    gender_column = _first_present(list(row), GENDER_COLUMNS)
    category_column = _first_present(list(row), CATEGORY_COLUMNS)
    assert bib_column is not None and gender_column is not None  # checked on the header

    bib = row[bib_column]
    if not bib:
        reasons.append("bib is empty")
    elif any(character.isspace() for character in bib):
        reasons.append(f"bib {bib!r} contains spaces")

    gender = parse_gender(row[gender_column])
    if gender is None:
        reasons.append(f"gender {row[gender_column]!r} is not M/F/X (male, female, "
                       "non-binary, ...)")

    label = row.get(category_column, "") if category_column else ""
    bounds: tuple[int, int | None] | None = None
    if label:
        try:
            low, high, label_gender = parse_category(label)
        except ValueError as error:
            reasons.append(str(error))
        else:
            bounds = (low, high)
            if label_gender is not None and gender is not None and label_gender != gender:
                reasons.append(f"age category {label!r} contradicts gender {gender}")

    birth_bounds, birth_problem = _bounds_from_birth(row, race_date)
    if birth_problem:
        reasons.append(birth_problem)
    if birth_bounds is not None:
        bounds = birth_bounds
        if not label:
            low, high = birth_bounds
            label = f"age {low}" if low == high else f"age {low}-{high}"
    if bounds is None and not reasons:
        reasons.append("no age category and no birth date/year")

    if reasons:
        raise ValueError("; ".join(reasons))
    assert gender is not None and bounds is not None
    known = {bib_column, gender_column, category_column, BIRTH_DATE_COLUMN, BIRTH_YEAR_COLUMN,
             RACE_DATE_COLUMN, NAME_COLUMN}
    extra = {key: value for key, value in row.items() if key not in known and value}
    return Runner(
        bib=bib,
        gender=gender,
        age_min=bounds[0],
        age_max=bounds[1],
        category=label,
        name=row.get(NAME_COLUMN) or None,
        extra=extra,
    )


def _bounds_from_birth(row: dict[str, str], race_date: date | None
                       ) -> tuple[tuple[int, int] | None, str | None]:
    birth_date_text = row.get(BIRTH_DATE_COLUMN, "")
    birth_year_text = row.get(BIRTH_YEAR_COLUMN, "")
    if not birth_date_text and not birth_year_text:
        return None, None
    race_date_text = row.get(RACE_DATE_COLUMN, "")
    race_day = race_date
    if race_date_text:
        try:
            race_day = date.fromisoformat(race_date_text)
        except ValueError:
            return None, f"race_date {race_date_text!r} is not YYYY-MM-DD"
    if race_day is None:
        return None, "a birth date/year needs a race date (race_date column or --race-date)"
    if birth_date_text:
        try:
            birth = date.fromisoformat(birth_date_text)
        except ValueError:
            return None, f"birth_date {birth_date_text!r} is not YYYY-MM-DD"
        age = age_on(birth, race_day)
        low, high = age, age
    else:
        if not birth_year_text.isdigit() or len(birth_year_text) != 4:
            return None, f"birth_year {birth_year_text!r} is not a four-digit year"
        high = race_day.year - int(birth_year_text)
        low = max(high - 1, 0)
    if not 0 <= high <= _MAX_AGE:
        return None, f"age {high} on race day is implausible"
    return (low, high), None
