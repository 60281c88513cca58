"""Registration lists for the RBNR photos, to measure the review burden.

Writes, per set, into OUT (default ``racecheck-out/registrations``, not kept in git: the
lists are rebuilt the same from the files in ``benchmarks/data``):

* ``<set>_runners.csv``: every runner whose number is known on the set's photos (RBNR's
  labels and ``rbnr_unlabelled_bibs.json``), with the gender seen on the photos
  (``rbnr_labelled_genders.json`` for RBNR's labels); ``18+`` for everyone: no ages are
  known, so the age rule is not what these lists measure. Runners whose bib is only
  partly legible are missing when no photo gives their number: their fragments then
  test the rules for unregistered reads;
* ``<set>_runners_planted.csv``: the same with the gender of a few runners (every tenth,
  at random with a fixed seed, among those whose gender is certain) turned the other way:
  their photos should come out flagged;
* ``<set>_full_range.csv`` and ``<set>_full_range_planted.csv``: the same filled with every
  other number from 1 to the set's highest, as a race that issues its bibs densely would
  register them (genders alternate): most fragments of a bib are then registered numbers.

    .venv/bin/python benchmarks/rbnr_registrations.py [OUT]

``racecheck eval rbnr ../shared/datasets/rbnr/set1 --runners OUT/set1_runners.csv`` then
prints the review burden.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
RBNR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "rbnr"
UNLABELLED = DATA / "rbnr_unlabelled_bibs.json"
GENDERS = DATA / "rbnr_labelled_genders.json"
SEED = 9
PLANTED_SHARE = 0.1
CATEGORY = "18+"


def runners_of(set_name: str) -> dict[str, tuple[str, bool]]:
    """Number -> (gender, certain) for every runner whose number is known on the set's
    photos: RBNR's labels (label errors corrected), the bibs it left unlabelled that are
    fully legible, and those partly legible whose number another photo gives."""
    labelled = json.loads(GENDERS.read_text(encoding="utf-8"))["sets"][set_name]
    extra = json.loads(UNLABELLED.read_text(encoding="utf-8"))
    corrections = {str(error["labelled"]): str(error["seen"])
                   for error in extra.get("label_errors", [])
                   if str(error["file"]).startswith(set_name)}
    runners = {corrections.get(number, number): (entry["gender"], entry.get("certain", True))
               for number, entry in labelled.items()}
    for entry in extra["sets"].get(set_name, []):
        whole = entry.get("legible", "full") == "full"
        number = str(entry["number"]) if whole else entry.get("likely_number")
        if not number:
            continue
        number = number.lstrip("0") or "0"
        gender = entry.get("gender")
        if number not in runners:
            runners[number] = (gender, True) if gender in ("M", "F") else ("M", False)
    return runners


def planted(runners: dict[str, tuple[str, bool]]) -> set[str]:
    certain = sorted(number for number, (_, sure) in runners.items() if sure)
    count = max(1, round(PLANTED_SHARE * len(certain)))
    return set(random.Random(SEED).sample(certain, count))


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bib", "gender", "age_category"])
        for number, gender in sorted(rows, key=lambda row: int(row[0])):
            writer.writerow([number, gender, CATEGORY])


def main(out: Path) -> int:
    if not RBNR.is_dir():
        print(f"RBNR dataset absent at {RBNR}")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for set_name in ("set1", "set2"):
        runners = runners_of(set_name)
        wrong = planted(runners)
        flip = {"M": "F", "F": "M"}
        seen = [(number, gender) for number, (gender, _) in runners.items()]
        planted_rows = [(number, flip[gender] if number in wrong else gender)
                        for number, gender in seen]
        highest = max(int(number) for number in runners)
        filler = [(str(value), "MF"[value % 2]) for value in range(1, highest + 1)
                  if str(value) not in runners]
        write(out / f"{set_name}_runners.csv", seen)
        write(out / f"{set_name}_runners_planted.csv", planted_rows)
        write(out / f"{set_name}_full_range.csv", seen + filler)
        write(out / f"{set_name}_full_range_planted.csv", planted_rows + filler)
        print(f"{set_name}: {len(runners)} runners on the photos, planted wrong genders for "
              f"{len(wrong)} ({', '.join(sorted(wrong, key=int))}); full range 1..{highest}")
    return 0


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "racecheck-out" / "registrations"
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
