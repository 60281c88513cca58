"""`racecheck review`: the review page served on 127.0.0.1, with Confirm/Dismiss buttons.

There is no hosted surface: the server listens on the loopback address only and acts with
the reviewer's own rights (their AWS credentials, or their local files). What a web page
on another site could still try is covered as follows:

- a decision is a POST with a JSON body and the page's per-session token in a header; a
  cross-site page can neither read the token nor send that header without a CORS
  preflight, which this server never grants;
- requests naming another host (DNS rebinding) are refused;
- pages carry a Content-Security-Policy: scripts only with the page's nonce, no frames.

Filters (verdict, reason, bib, time window, undecided only) are query parameters, so a
filtered view is a link; `/runner?bib=N` shows every photo of a bib with the runner's
evidence and decisions, `/photo?ref=R` one photo (what the alerts' commands open).
"""

from __future__ import annotations

import hmac
import html
import secrets
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, g, jsonify, request, send_from_directory
from werkzeug.serving import make_server

from racecheck.core.decisions import (
    ACTIONS,
    CONFIRM,
    DECIDABLE_VERDICTS,
    DISMISS,
    STATE_AFTER,
    UNDO,
    DecisionRefused,
    current_state,
)
from racecheck.core.review_links import console_object_url
from racecheck.review import _CSS, PHOTOS_DIR_NAME, VERDICT_HELP, VERDICT_ORDER, render_card
from racecheck.review import render_suspects as render_suspects_panel
from racecheck.review_sources import (
    ATTENTION,
    MAX_PHOTOS,
    Filters,
    ReviewSource,
    UnknownPhoto,
    decide_runner,
    normalize_time,
)

TOKEN_HEADER = "X-Racecheck-Token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
ACTION_LABELS = {CONFIRM: "Confirm", DISMISS: "Dismiss", UNDO: "Undo"}
ACTION_HELP = {
    CONFIRM: "I looked: the bib is worn by someone else (counts against the runner)",
    DISMISS: "I looked: a false alarm (no longer counts as inconsistent)",
    UNDO: "Withdraw the current decision (the history keeps it)",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def filters_from(args: Mapping[str, Any], getlist: Callable[[str], list[str]]) -> Filters:
    verdicts = tuple(v for v in getlist("verdict") if v in VERDICT_ORDER) or ATTENTION
    try:
        since = normalize_time(args.get("since"))
        until = normalize_time(args.get("until"))
    except ValueError:
        abort(400, "since/until must be ISO times, e.g. 2026-11-22T08:00")
    return Filters(verdicts=verdicts, reason=(args.get("reason") or "").strip() or None,
                   bib=(args.get("bib") or "").strip() or None, since=since, until=until,
                   undecided=args.get("undecided") == "1")


def _datetime_local(value: str | None) -> str:
    return value[:16] if value else ""


class ReviewPages:
    """HTML for the three views; the source says where records and images come from."""

    def __init__(self, source: ReviewSource, *, token: str) -> None:
        self.source = source
        self.token = token

    # ---------------------------------------------------------------- pieces

    def controls(self, record: Mapping[str, Any]) -> str:
        ref = self.source.ref_of(record)
        parts = []
        if str(record.get("verdict")) in DECIDABLE_VERDICTS:
            state = current_state(record.get("decisions"))
            buttons = "".join(
                f'<button type="button" data-action="{action}" title="{_e(ACTION_HELP[action])}"'
                f'{" disabled" if STATE_AFTER[action] == state else ""}>'
                f"{ACTION_LABELS[action]}</button>"
                for action in ACTIONS)
            parts.append(
                f'<div class="decide" data-ref="{_e(ref)}">'
                '<textarea rows="2" maxlength="2000" placeholder="Note (optional)" '
                'aria-label="Note"></textarea>'
                f'<div class="buttons">{buttons}</div><p class="message" role="status"></p></div>')
        links = [f'<a href="/photo?{urlencode({"ref": ref})}">this photo</a>']
        bibs = sorted({str(entry.get("bib")) for entry in record.get("evidence") or []}
                      | {str(link.get("bib")) for link in record.get("links") or []})
        links += [f'<a href="/runner?{urlencode({"bib": bib})}">all photos of #{_e(bib)}</a>'
                  for bib in bibs if bib and bib != "None"]
        region = getattr(self.source, "region", None)
        if not self.source.local and region and record.get("bucket"):
            url = console_object_url(region=region, bucket=str(record["bucket"]),
                                     key=str(record.get("key", "")))
            links.append(f'<a href="{_e(url)}" target="_blank" rel="noopener noreferrer">'
                         "S3 console</a>")
        parts.append(f'<p class="views">Open: {" · ".join(links)}</p>')
        return "".join(parts)

    def card(self, record: Mapping[str, Any]) -> str:
        return render_card(record, image_src=self.source.image_url(record),
                           ref=self.source.ref_of(record), controls=self.controls(record),
                           visible=True)

    def runner_controls(self, runner: Mapping[str, Any]) -> str:
        bib = str(runner.get("bib", ""))
        buttons = "".join(
            f'<button type="button" data-action="{action}" title="{_e(ACTION_HELP[action])} '
            f'for each of this runner&#39;s inconsistent photos">{ACTION_LABELS[action]} all'
            "</button>" for action in ACTIONS)
        return (f'<div class="decide runner" data-bib="{_e(bib)}">'
                '<textarea rows="1" maxlength="2000" placeholder="Note (optional)" '
                f'aria-label="Note"></textarea><div class="buttons">{buttons}</div>'
                '<p class="message" role="status"></p></div>')

    def suspects(self, suspects: Sequence[Mapping[str, Any]]) -> str:
        return render_suspects_panel(
            suspects, runner_href=lambda bib: f"/runner?{urlencode({'bib': bib})}",
            runner_controls=self.runner_controls)

    def filter_form(self, filters: Filters) -> str:
        verdicts = "".join(
            f'<label class="filter v-{v.lower()}" title="{_e(VERDICT_HELP[v])}">'
            f'<input type="checkbox" name="verdict" value="{v}"'
            f'{" checked" if v in filters.verdicts else ""}><span>{v}</span></label>'
            for v in VERDICT_ORDER)
        return (
            '<form class="filters" id="filters" method="get" action="/">'
            f"{verdicts}"
            f'<input name="reason" placeholder="Reason code" value="{_e(filters.reason or "")}"'
            ' aria-label="Reason">'
            f'<input name="bib" placeholder="Bib" size="6" value="{_e(filters.bib or "")}"'
            ' aria-label="Bib">'
            '<label class="when">from <input type="datetime-local" name="since" '
            f'value="{_e(_datetime_local(filters.since))}"></label>'
            '<label class="when">to <input type="datetime-local" name="until" '
            f'value="{_e(_datetime_local(filters.until))}"> UTC</label>'
            '<label class="undecided"><input type="checkbox" name="undecided" value="1"'
            f'{" checked" if filters.undecided else ""}> Undecided only</label>'
            '<button type="submit">Apply</button></form>')

    def page(self, *, title: str, body: str, filters: Filters | None = None) -> str:
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="racecheck-token" content="{_e(self.token)}">
<title>{_e(title)}</title>
<style>{_CSS}{_SERVER_CSS}</style>
</head>
<body>
<header class="top">
  <div class="title">
    <h1><a href="/">racecheck review</a></h1>
    <p class="totals">{_e(self.source.where)} · deciding as
      <b id="reviewer">{_e(self.source.reviewer)}</b></p>
  </div>
  {self.filter_form(filters or Filters())}
</header>
{body}
<script nonce="{_e(g.nonce)}">{_SERVER_JS}</script>
</body>
</html>
"""

    # ---------------------------------------------------------------- views

    def list_view(self, filters: Filters) -> str:
        records = self.source.photos(filters)
        described = ", ".join(filter(None, [
            "/".join(filters.verdicts), filters.reason and f"reason {filters.reason}",
            filters.bib and f"bib {filters.bib}",
            filters.since and f"from {filters.since}", filters.until and f"to {filters.until}",
            "undecided only" if filters.undecided else ""]))
        cards = "".join(self.card(record) for record in records)
        body = (self.suspects(self.source.suspects())
                + f'<p class="legend" id="shown-count">{len(records)} photo(s): '
                f"{_e(described)}"
                + (" (the first ones only, worst verdict and newest first: narrow the "
                   "filters to see the others)" if len(records) >= MAX_PHOTOS else "")
                + "</p>"
                + f'<main id="cards">{cards}</main>'
                + ("" if records else '<p class="empty">No photo matches these filters.</p>'))
        return self.page(title=f"racecheck review: {len(records)} photo(s)", body=body,
                         filters=filters)

    def photo_view(self, ref: str) -> str:
        record = self.source.photo(ref)
        if record is None:
            abort(404, f"no photo {ref!r} in {self.source.where}")
        return self.page(title=f"racecheck review: {record.get('key')}",
                         body=f'<main id="cards" class="single">{self.card(record)}</main>')

    def runner_view(self, bib: str) -> str:
        runner = self.source.runner(bib)
        evidence = runner.evidence or {}
        registered = evidence.get("registered") or {}
        who = " ".join(str(part) for part in (registered.get("name"), registered.get("gender"),
                                              registered.get("category")) if part)
        counters = [("Photos seen", evidence.get("photos_seen", 0)),
                    ("Consistent", evidence.get("consistent", 0)),
                    ("Inconsistent", evidence.get("inconsistent", 0)),
                    ("Dismissed", len(evidence.get("dismissed_photos") or ())),
                    ("Confirmed", len(evidence.get("confirmed_photos") or ()))]
        counters += sorted((name.removeprefix("reason_"), count)
                           for name, count in evidence.items()
                           if name.startswith("reason_") and count)
        counters += [(label, evidence[name]) for label, name in (
            ("Alerted at", "alerted_at"), ("Cleared at", "cleared_at")) if evidence.get(name)]
        rows = "".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>"
                       for name, value in counters)
        status = str(evidence.get("status") or "")
        head = (
            f'<section class="runner" id="runner" data-bib="{_e(bib)}" '
            f'data-status="{_e(status)}"><h2>Bib #{_e(bib)} '
            f'<span class="muted">{_e(who) if who else "(not registered)"}</span> '
            + (f'<span class="status s-{_e(status)}">{_e(status)}</span>' if status else "")
            + "</h2>"
            + (f'<table class="counters">{rows}</table>' if runner.evidence else
               '<p class="muted">No evidence recorded for this bib (unregistered, or no '
               "photo compared yet).</p>")
            + (self.runner_controls({"bib": bib}) if evidence.get("inconsistent_photos")
               or evidence.get("dismissed_photos") else "")
            + f"<p>{len(runner.photos)} photo(s) of this bib, worst verdict first.</p></section>")
        cards = "".join(self.card(record) for record in runner.photos)
        return self.page(title=f"racecheck review: bib {bib}",
                         body=head + f'<main id="cards">{cards}</main>',
                         filters=Filters(bib=bib, verdicts=VERDICT_ORDER))


def create_app(source: ReviewSource, *, token: str) -> Flask:
    app = Flask(__name__)
    pages = ReviewPages(source, token=token)

    @app.before_request
    def only_for_this_machine() -> None:
        host = (request.host or "").rsplit(":", 1)[0].strip("[]")
        if host not in LOOPBACK_HOSTS:
            abort(403, "this page answers on 127.0.0.1 only")
        g.nonce = secrets.token_urlsafe(16)
        if request.method == "POST":
            given = request.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                abort(403, "missing or wrong page token: reload the page")
            origin = request.headers.get("Origin")
            if origin and origin.split("://", 1)[-1].rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
                abort(403, "cross-site request refused")

    @app.after_request
    def protect(response: Response) -> Response:
        nonce = getattr(g, "nonce", "")
        # Presigned URLs name the bucket's S3 endpoint (China's partition has its own domain).
        images = ("'self'" if source.local
                  else "'self' https://*.amazonaws.com https://*.amazonaws.com.cn")
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
            f"script-src 'nonce-{nonce}'; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Presigned URLs and keys must not leak to the S3 console or anywhere else.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def refused(error: Any) -> tuple[Response, int]:
        if request.path.startswith("/api/"):
            return jsonify(error=error.description), error.code
        return Response(f"<!doctype html><title>racecheck</title><p>{_e(error.description)}"
                        '</p><p><a href="/">back to the review page</a></p>',
                        mimetype="text/html"), error.code

    @app.get("/")
    def index() -> str:
        return pages.list_view(filters_from(request.args, request.args.getlist))

    @app.get("/photo")
    def photo() -> str:
        return pages.photo_view(request.args.get("ref", ""))

    @app.get("/runner")
    def runner() -> str:
        bib = (request.args.get("bib") or "").strip()
        if not bib:
            abort(400, "which bib? /runner?bib=NUMBER")
        return pages.runner_view(bib)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # Browsers ask for it on every page; an empty answer keeps their consoles clean.
        return Response(status=204)

    @app.get("/images/<name>")
    def image(name: str) -> Response:
        run_dir = getattr(source, "run_dir", None)
        if run_dir is None:
            abort(404, "photos come from S3 here")
        return send_from_directory(run_dir / PHOTOS_DIR_NAME, name)

    def decision_request() -> tuple[dict[str, Any], str, str]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, "expected a JSON object")
        action = str(body.get("action", ""))
        if action not in ACTIONS:
            abort(400, f"action must be one of {', '.join(ACTIONS)}")
        return body, action, str(body.get("note") or "")

    @app.post("/api/decisions")
    def decide() -> tuple[Response, int]:
        body, action, note = decision_request()
        try:
            record = source.decide(str(body.get("ref", "")), action, note)
        except UnknownPhoto as error:
            return jsonify(error=str(error)), 404
        except DecisionRefused as error:
            return jsonify(error=str(error)), 409
        return jsonify(ref=source.ref_of(record), decision=record.get("decision"),
                       decisions=record.get("decisions")), 200

    @app.post("/api/runner-decisions")
    def decide_for_runner() -> tuple[Response, int]:
        body, action, note = decision_request()
        bib = str(body.get("bib", "")).strip()
        if not bib:
            abort(400, "which bib?")
        return jsonify(decide_runner(source, bib, action, note)), 200

    return app


def serve(source: ReviewSource, *, port: int = 0, open_path: str = "/",
          open_browser: bool = True, announce: Callable[[str], None] = print) -> None:
    """Serve on 127.0.0.1 until Ctrl-C; ``port`` 0 takes any free port."""
    token = secrets.token_urlsafe(32)
    server = make_server("127.0.0.1", port, create_app(source, token=token), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}{open_path}"
    announce(url)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


_SERVER_CSS = """
.top h1 a { color:#fff; text-decoration:none; }
.filters input[name=reason], .filters input[name=bib], .when input { padding:5px 8px;
  border-radius:6px; border:1px solid #40536a; background:#0d1620; color:#fff; }
.when { color:#cfd8e3; font-size:13px; }
.filters button { padding:6px 14px; border-radius:6px; border:0; font-weight:700; cursor:pointer; }
.card { display:block; }
.decide textarea { width:100%; font:inherit; padding:4px 6px; border-radius:6px;
  border:1px solid var(--line); resize:vertical; }
.decide .buttons { display:flex; gap:8px; margin-top:6px; }
.decide button { padding:5px 14px; border-radius:6px; border:1px solid #9aa7b4;
  background:#fff; font-weight:700; cursor:pointer; }
.decide button[data-action=confirm] { border-color:var(--fail); color:var(--fail); }
.decide button[data-action=dismiss] { border-color:#546e7a; color:#37474f; }
.decide button:disabled { opacity:.4; cursor:default; }
.decide .message { margin:4px 0 0; color:var(--fail); }
.decide.runner { min-width:260px; }
.views { margin:6px 0 0; }
.runner { margin:14px 24px 0; padding:12px 16px; background:#fff; border-radius:10px;
  box-shadow:0 1px 3px rgba(0,0,0,.12); }
.runner h2 { margin:0 0 8px; }
.counters { border-collapse:collapse; margin-bottom:8px; }
.counters th, .counters td { text-align:left; padding:2px 12px 2px 0; }
main.single { grid-template-columns:minmax(440px, 900px); }
"""

_SERVER_JS = """
(function () {
  var token = document.querySelector('meta[name=racecheck-token]').content;
  function send(box, button) {
    var runner = box.dataset.bib !== undefined;
    var body = {action: button.dataset.action, note: box.querySelector('textarea').value};
    if (runner) { body.bib = box.dataset.bib; } else { body.ref = box.dataset.ref; }
    var message = box.querySelector('.message');
    box.querySelectorAll('button').forEach(function (b) { b.disabled = true; });
    message.textContent = 'Saving...';
    fetch(runner ? '/api/runner-decisions' : '/api/decisions', {
      method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
      headers: {'Content-Type': 'application/json', 'X-Racecheck-Token': token}
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) { throw new Error(answer.error || response.statusText); }
        location.reload();
      });
    }).catch(function (error) {
      message.textContent = error.message;
      box.querySelectorAll('button').forEach(function (b) { b.disabled = false; });
    });
  }
  document.querySelectorAll('.decide button[data-action]').forEach(function (button) {
    button.addEventListener('click', function () { send(button.closest('.decide'), button); });
  });
  document.querySelectorAll('.photo-link').forEach(function (link) {
    link.href = '/photo?ref=' + encodeURIComponent(link.dataset.key);
  });
})();
"""
