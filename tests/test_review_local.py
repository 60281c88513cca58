"""The reviewer's loop on a local run: `racecheck decide`, the served page, the export."""

from __future__ import annotations

import contextlib
import html
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from racecheck import review_server
from racecheck.cli import main
from racecheck.core.settings import Settings
from racecheck.local import decisions_file
from racecheck.local.runner import run_photos
from racecheck.review import write_review_page
from racecheck.review_server import TOKEN_HEADER, create_app
from racecheck.review_sources import LocalReview
from tests.conftest import make_jpeg
from tests.test_workflow_local import CLEAN_MALE, ScriptedRekognition

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real local run: two photos of a man on Ana's bib 3631 (FAIL, a suspect), one PASS."""
    settings = Settings.from_cdk_json()
    root = tmp_path_factory.mktemp("run")
    photos = root / "photos in"
    (photos / "km 5").mkdir(parents=True)
    rekognition = ScriptedRekognition()
    for key, colour in (("a.jpg", "#225566"), ("km 5/b.jpg", "#662255")):
        (photos / key).write_bytes(make_jpeg(colour=colour))
        rekognition.script(key, **CLEAN_MALE)
    (photos / "pass.jpg").write_bytes(make_jpeg())
    rekognition.script("pass.jpg", DetectModerationLabels="detect_moderation_clean",
                       DetectText="detect_text_nothing")
    runners = root / "runners.csv"
    runners.write_text("bib,gender,age_category,name\n3631,F,18-39,Ana\n", encoding="utf-8")
    out = root / "out"
    summary = run_photos(inputs=[photos], out_dir=out, settings=settings, backend=rekognition,
                         runners_csv=runners)
    assert dict(summary.verdicts) == {"FAIL": 2, "PASS": 1}
    records = decisions_file.read_results(out)
    write_review_page(records, photos_root=photos, out_dir=out, suspects=summary.suspects)
    return out


@pytest.fixture
def run(finished_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the run for each test: decisions change it."""
    return Path(shutil.copytree(finished_run, tmp_path / "out"))


def decide(run: Path, *arguments: str) -> Any:
    return CliRunner().invoke(main, ["decide", *arguments, "--local", str(run)])


def suspect_rows(run: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["suspects", "--local", str(run), "--format", "json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output))


# ------------------------------------------------------------------------ decide


def test_a_run_leaves_the_evidence_a_decision_needs_and_alerts_name_the_command(
        run: Path, finished_run: Path) -> None:
    assert [(row["bib"], row["status"], row["inconsistent"]) for row in suspect_rows(run)] == [
        ("3631", "suspect", 2)]
    alerts = [json.loads(line) for line in (run / "alerts.jsonl").read_text().splitlines()]
    photo_alerts = [a["message"] for a in alerts if a["attributes"]["alert_type"] == "PHOTO"]
    # (this copy's alerts name the folder the run wrote them to)
    assert any(f"Review: racecheck review --local {finished_run} --photo 'km 5/b.jpg'"
               in message for message in photo_alerts)
    (suspect_alert,) = [a["message"] for a in alerts
                        if a["attributes"]["alert_type"] == "SUSPECT"]
    assert (f"Review all photos of bib 3631: racecheck review --local {finished_run} --bib 3631"
            in suspect_alert)
    assert "  Open: " not in suspect_alert  # a local run's bucket has no console


def test_dismiss_then_confirm_moves_the_suspects_list(run: Path) -> None:
    # when a.jpg is dismissed
    done = decide(run, "a.jpg", "--dismiss", "--note", "bib on a jacket")
    assert done.exit_code == 0, done.output
    assert "a.jpg: dismissed by " in done.output and "verdict FAIL kept" in done.output
    # then the runner counts one inconsistent photo and is cleared
    (row,) = suspect_rows(run)
    assert (row["status"], row["inconsistent"], row["dismissed"]) == ("cleared", 1, 1)
    # when the other photo is confirmed
    assert decide(run, "km 5/b.jpg", "--confirm").exit_code == 0
    (row,) = suspect_rows(run)
    assert (row["status"], row["confirmed"]) == ("confirmed", 1)
    # and suspects.json follows too, while results.jsonl keeps the machine's verdicts
    written = json.loads((run / "suspects.json").read_text(encoding="utf-8"))
    assert written[0]["status"] == "confirmed"
    assert {r["key"]: r["verdict"] for r in decisions_file.read_results(run)} == {
        "a.jpg": "FAIL", "km 5/b.jpg": "FAIL", "pass.jpg": "PASS"}
    lines = (run / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["dismiss", "confirm"]
    assert json.loads(lines[0])["note"] == "bib on a jacket"


@pytest.mark.parametrize(("arguments", "message"), [
    (["nope.jpg", "--dismiss"], "Invalid value for PHOTO_KEY: no photo 'nope.jpg'"),
    (["pass.jpg", "--confirm"], "pass.jpg was never flagged (verdict PASS)"),
    (["a.jpg"], "give exactly one of --confirm, --dismiss or --undo"),
    (["a.jpg", "--confirm", "--dismiss"], "give exactly one of --confirm, --dismiss or --undo"),
])
def test_decide_usage_errors_exit_2_with_a_clear_message(
        run: Path, arguments: list[str], message: str) -> None:
    result = decide(run, *arguments)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (run / "decisions.jsonl").exists() or not (
        run / "decisions.jsonl").read_text(encoding="utf-8")


def test_a_repeat_decision_records_nothing_and_says_who_decided(run: Path) -> None:
    assert decide(run, "a.jpg", "--dismiss").exit_code == 0
    again = decide(run, "a.jpg", "--dismiss")
    assert again.exit_code == 0
    assert "a.jpg is already dismissed by " in again.output and "nothing recorded" in again.output
    assert len((run / "decisions.jsonl").read_text(encoding="utf-8").splitlines()) == 1


def test_deciding_a_suspect_by_bib_decides_each_photo_that_counts_against_them(
        run: Path) -> None:
    # when both of Ana's inconsistent photos are dismissed at once
    done = decide(run, "--bib", "3631", "--dismiss", "--note", "bib on a jacket")
    assert done.exit_code == 0, done.output
    assert "a.jpg: dismissed by " in done.output and "km 5/b.jpg: dismissed by " in done.output
    assert "bib 3631: 2 photo(s) decided; runner status cleared" in done.output
    # then both are in the log with the note, and the runner counts nothing against her
    lines = [json.loads(line) for line in
             (run / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((line["key"], line["action"], line["note"]) for line in lines) == [
        ("a.jpg", "dismiss", "bib on a jacket"), ("km 5/b.jpg", "dismiss", "bib on a jacket")]
    (row,) = suspect_rows(run)
    assert (row["status"], row["inconsistent"], row["dismissed"]) == ("cleared", 0, 2)
    # and again: nothing left to dismiss, nothing recorded
    again = decide(run, "--bib", "3631", "--dismiss")
    assert again.exit_code == 0 and "0 photo(s) decided (no photo counts" in again.output
    assert len((run / "decisions.jsonl").read_text(encoding="utf-8").splitlines()) == 2


@pytest.mark.parametrize(("arguments", "message"), [
    (["--bib", "9999", "--dismiss"], "Invalid value for --bib: no photo and no evidence for "
                                     "bib 9999"),
    (["a.jpg", "--bib", "3631", "--dismiss"], "give either PHOTO_KEY or --bib"),
    (["--dismiss"], "give either PHOTO_KEY or --bib"),
])
def test_decide_by_bib_usage_errors_exit_2(run: Path, arguments: list[str], message: str) -> None:
    result = decide(run, *arguments)
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not (run / "decisions.jsonl").exists()


def test_a_folder_that_is_no_run_is_one_clear_line(tmp_path: Path) -> None:
    result = decide(tmp_path, "a.jpg", "--dismiss")
    assert result.exit_code == 1
    assert result.output.strip() == (f"racecheck: {tmp_path / 'results.jsonl'} not found: run "
                                     f"`racecheck run ... --out {tmp_path}` first")


def test_decisions_recorded_at_once_are_all_kept(run: Path) -> None:
    keys = ["a.jpg", "km 5/b.jpg"] * 4
    actions = ["dismiss", "confirm", "undo", "confirm"] * 2

    def record(key: str, action: str) -> None:
        # the same state twice is refused, by design
        with contextlib.suppress(ValueError):
            decisions_file.record_decision(run, key, action, by="t", at="t")

    threads = [threading.Thread(target=record, args=pair) for pair in zip(keys, actions,
                                                                           strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = [json.loads(line) for line in
             (run / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines and all(set(line) == {"key", "action", "by", "at"} for line in lines)
    # every line is whole, and the suspects file agrees with the log as it ends
    assert decisions_file.suspects(run) == json.loads(
        (run / "suspects.json").read_text(encoding="utf-8"))


def test_export_shows_decisions_on_a_static_page(run: Path, tmp_path: Path) -> None:
    assert decide(run, "a.jpg", "--dismiss", "--note", "<b>jacket</b>").exit_code == 0
    page = tmp_path / "shared" / "review-ana.html"
    result = CliRunner().invoke(main, ["review", "--local", str(run), "--export", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert 'data-decision="dismissed"' in text and "&lt;b&gt;jacket&lt;/b&gt;" in text
    assert len(list((tmp_path / "shared" / "photos").glob("*.jpg"))) == 2


# ------------------------------------------------------------------------ the server


def test_the_server_refuses_other_hosts_and_posts_without_the_token(run: Path) -> None:
    client = create_app(LocalReview(run), token="secret").test_client()
    assert client.get("/", headers={"Host": "evil.example:8000"}).status_code == 403
    body = {"ref": "a.jpg", "action": "dismiss"}
    assert client.post("/api/decisions", json=body).status_code == 403
    assert client.post("/api/decisions", json=body, headers={
        TOKEN_HEADER: "secret", "Origin": "https://evil.example"}).status_code == 403
    assert not (run / "decisions.jsonl").exists()
    # with the token, from the page's own origin
    done = client.post("/api/decisions", json=body, headers={
        TOKEN_HEADER: "secret", "Origin": "http://127.0.0.1:5000"})
    assert done.status_code == 200 and done.json["decision"] == "dismissed"  # type: ignore[index]
    refused = client.post("/api/decisions", json=body, headers={TOKEN_HEADER: "secret"})
    assert refused.status_code == 409 and "already dismissed" in refused.json["error"]  # type: ignore[index]


def shown(client: Any, query: str) -> list[str]:
    page = client.get("/?" + query)
    assert page.status_code == 200, page.get_data(as_text=True)
    return sorted(html.unescape(ref) for ref in
                  re.findall(r'<article class="card[^>]*data-ref="([^"]*)"',
                             page.get_data(as_text=True)))


def test_the_filters_narrow_the_list_by_verdict_reason_bib_time_and_decision(run: Path) -> None:
    # given the run's two FAIL photos and one PASS, as recorded
    client = create_app(LocalReview(run), token="t").test_client()
    records = {r["key"]: r for r in decisions_file.read_results(run)}
    flagged = ["a.jpg", "km 5/b.jpg"]
    reason = records["a.jpg"]["reasons"][0]
    times = sorted(str(records[key]["recorded_at"]) for key in flagged)
    # then by default the page lists what needs attention, and each filter narrows it
    assert shown(client, "") == flagged
    assert shown(client, "verdict=PASS") == ["pass.jpg"]
    assert shown(client, "verdict=PASS&verdict=FAIL") == [*flagged, "pass.jpg"]
    assert shown(client, urlencode({"reason": reason})) == flagged
    assert shown(client, "reason=NO_SUCH_REASON") == []
    assert shown(client, "bib=3631") == flagged
    assert shown(client, "bib=9999") == []
    assert shown(client, urlencode({"since": times[0], "until": times[-1]})) == flagged
    assert shown(client, "since=2999-01-01T00:00") == []
    assert shown(client, "until=2000-01-01T00:00") == []
    assert client.get("/?since=yesterday").status_code == 400
    # and once a.jpg is dismissed, "undecided only" leaves the other one
    assert decide(run, "a.jpg", "--dismiss").exit_code == 0
    assert shown(client, "undecided=1") == ["km 5/b.jpg"]


def test_a_list_cut_at_its_limit_says_so(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = create_app(LocalReview(run), token="t").test_client()
    assert "the first ones only" not in client.get("/").get_data(as_text=True)
    # when the limit is the number of flagged photos, the page may not show them all
    monkeypatch.setattr(review_server, "MAX_PHOTOS", 2)
    assert "the first ones only" in client.get("/").get_data(as_text=True)


def test_the_server_listens_on_the_loopback_address_only(
        run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[str] = []

    class Server:
        server_port = 8123

        def serve_forever(self) -> None:
            raise KeyboardInterrupt  # what Ctrl-C does

        def server_close(self) -> None:
            pass

    def fake_make_server(host: str, port: int, app: Any, threaded: bool) -> Server:
        bound.append(host)
        return Server()

    monkeypatch.setattr(review_server, "make_server", fake_make_server)
    announced: list[str] = []
    review_server.serve(LocalReview(run), open_browser=False, announce=announced.append)
    assert bound == ["127.0.0.1"] and announced == ["http://127.0.0.1:8123/"]


def test_the_runner_view_lists_every_photo_of_the_bib_with_its_counters(run: Path) -> None:
    client = create_app(LocalReview(run), token="t").test_client()
    page = client.get("/runner?bib=3631")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count('class="card') == 2 and 'data-status="suspect"' in html
    assert "<th>Inconsistent</th><td>2</td>" in html and "Ana" in html
    nonce = page.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in html
    name = html.split("/images/")[1].split('"')[0]
    image = client.get(f"/images/{name}")
    assert image.status_code == 200 and image.mimetype == "image/jpeg"
    assert client.get("/images/..%2Fresults.jsonl").status_code == 404


# ------------------------------------------------------------------------ the browser


@pytest.fixture
def served(run: Path) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_app(LocalReview(run), token="page-token"),
                         threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium absent: apt-get install chromium")
def test_in_chromium_a_dismissal_and_a_confirmation_change_the_records_and_the_page(
        run: Path, served: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text)
                    if message.type == "error" else None)
            page.goto(served + "/")
            suspect = page.locator("#suspects tr[data-bib='3631']")
            assert suspect.get_attribute("data-status") == "suspect"
            # when the reviewer dismisses a.jpg with a note
            card = page.locator("article.card[data-ref='a.jpg']")
            card.locator("textarea").fill("bib pinned on a jacket")
            with page.expect_navigation():
                card.locator("button[data-action=dismiss]").click()
            # then the page, reloaded, shows the decision and the cleared runner
            card = page.locator("article.card[data-ref='a.jpg']")
            assert card.get_attribute("data-decision") == "dismissed"
            assert "bib pinned on a jacket" in card.locator(".history").inner_text()
            assert card.locator("button[data-action=dismiss]").is_disabled()
            assert suspect.get_attribute("data-status") == "cleared"
            assert suspect.locator("td").nth(2).inner_text() == "1"  # inconsistent photos
            # when the other photo is confirmed from the runner's view
            page.goto(served + "/runner?bib=3631")
            with page.expect_navigation():
                page.locator("article.card[data-ref='km 5/b.jpg'] "
                             "button[data-action=confirm]").click()
            assert page.locator("#runner").get_attribute("data-status") == "confirmed"
            # and after a plain reload of the list, both decisions are still shown
            page.goto(served + "/?undecided=1")
            assert page.locator("article.card").count() == 0
            page.goto(served + "/")
            page.reload()
            states = {page.locator("article.card").nth(i).get_attribute("data-ref"):
                      page.locator("article.card").nth(i).get_attribute("data-decision")
                      for i in range(page.locator("article.card").count())}
            assert states == {"a.jpg": "dismissed", "km 5/b.jpg": "confirmed"}
            page.screenshot(path=str(tmp_path / "decided.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    # and the run's files hold the decisions; the suspects list and counters follow them
    lines = [json.loads(line) for line in
             (run / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(line["key"], line["action"]) for line in lines] == [
        ("a.jpg", "dismiss"), ("km 5/b.jpg", "confirm")]
    (row,) = json.loads((run / "suspects.json").read_text(encoding="utf-8"))
    assert (row["status"], row["inconsistent"], row["dismissed"], row["confirmed"]) == (
        "confirmed", 1, 1, 1)
