"""The report's Markdown and HTML: per site (OPD) its title, its top domains and its blocked
categories, from the figures gather() computes (figures.json holds the same)."""

import json
import re

from gerbang_kota import report

START = 1_795_000_000.0


def site(download: bool, domains: list, requests: list, blocked: dict) -> dict:
    entry = {"top_domains_bytes": domains, "top_domains_requests": requests, "blocked_by_category": blocked,
             "proxy_denied": 4, "dns_blocked": 2, "proxy_allowed": 3, "devices_registered": 6,
             "devices_with_traffic": ["pc-1"], "devices_active_max": 1, "devices_unregistered_max": 0}
    if download:
        entry["download"] = {"rate_mbit": 5.0, "ceil_mbit": 10.0, "peak_mbit": 9.5, "p95_mbit": 9.0, "mean_mbit": 2.0,
                             "work_mean_mbit": 2.0, "work_utilisation": 0.2, "bytes": 3e6, "samples": 3, "work_samples": 3}
        entry["series"] = {"download": [(START, 1e6), (START + 60, 2e6)], "upload": [(START, 1e5), (START + 60, 2e5)]}
    return entry


DATA = {
    "start": START, "end": START + 120, "step": 60, "timezone": "Asia/Jakarta", "working_hours": "mon-fri 07:00-16:00",
    "sites": {
        "setda": site(True, [("kompas.com", 3_000_000.0), ("lpse.serangkota.go.id", 500_000.0)],
                      [("kompas.com", 3.0), ("lpse.serangkota.go.id", 7.0)], {"games": 6.0, "trustpositif": 2.0}),
        "rsud": site(True, [("detik.com", 1_250_000.0)], [("detik.com", 2.0)], {"social": 1.0}),
        "bpbd": site(False, [], [], {}),
    },
    "city": {"top_domains_bytes": [("kompas.com", 3_000_000.0)], "blocked_by_category": [("games", 6.0)]},
}
TITLES = {"setda": "Sekretariat Daerah", "rsud": "RSUD dr. Drajat Prawiranegara", "bpbd": "Badan Penanggulangan Bencana Daerah"}


def section(markdown: str, heading: str) -> str:
    """The text under a ### heading, up to the next heading."""
    start = markdown.index(heading + "\n")
    following = re.search(r"^#{1,3} ", markdown[start + len(heading):], re.M)
    return markdown[start:start + len(heading) + (following.start() if following else len(markdown))]


def test_each_site_has_its_title_top_domains_and_blocked_categories(tmp_path):
    report.write_report(DATA, tmp_path, titles=TITLES)
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    setda = section(markdown, "### setda — Sekretariat Daerah")
    assert "| kompas.com | 3.00 | 3 |" in setda
    assert "| lpse.serangkota.go.id | 0.50 | 7 |" in setda
    assert "| games | 6 |" in setda and "| trustpositif | 2 |" in setda
    assert "![setda](site-setda.svg)" in setda
    assert "detik.com" not in setda and "social" not in setda, "another site's figures"
    rsud = section(markdown, "### rsud — RSUD dr. Drajat Prawiranegara")
    assert "| detik.com | 1.25 | 2 |" in rsud and "| social | 1 |" in rsud
    # A site without traffic in the period still has its section, saying there was nothing.
    bpbd = section(markdown, "### bpbd — Badan Penanggulangan Bencana Daerah")
    assert "| – | – | – |" in bpbd and "site-bpbd.svg" not in bpbd
    # Titles in the devices table too.
    assert re.search(r"^\| setda \| Sekretariat Daerah \| 6 \| 1 \|", markdown, re.M)


def test_html_and_figures_carry_the_same_per_site_figures(tmp_path):
    report.write_report(DATA, tmp_path, titles=TITLES)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h3>setda — Sekretariat Daerah</h3>" in html
    assert "<tr><td>kompas.com</td><td>3.00</td><td>3</td></tr>" in html
    assert "<tr><td>games</td><td>6</td></tr>" in html
    assert html.index("<h3>rsud — RSUD dr. Drajat Prawiranegara</h3>") < html.index("<td>detik.com</td>")
    figures = json.loads((tmp_path / "figures.json").read_text(encoding="utf-8"))
    assert figures["sites"]["setda"]["title"] == "Sekretariat Daerah"
    assert figures["sites"]["setda"]["top_domains_bytes"][0] == ["kompas.com", 3_000_000.0]


def test_report_without_titles_still_names_each_site(tmp_path):
    report.write_report(DATA, tmp_path)
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "### setda\n" in markdown and "| kompas.com | 3.00 | 3 |" in markdown


def test_working_hours_from_compiled_segments_are_named_in_the_report(tmp_path):
    """gather() takes the city's compiled segments; the report states them as windows."""
    segments = [{"day": d, "start_minute": 420, "end_minute": 960} for d in range(5)] + \
        [{"day": 5, "start_minute": 480, "end_minute": 720}]

    class Empty:
        def range(self, *_args):
            return {}

        def instant(self, *_args):
            return []

    data = report.gather(Empty(), START, START + 120, 60, "Asia/Jakarta", segments)
    assert data["working_hours"] == "mon,tue,wed,thu,fri 07:00-16:00; sat 08:00-12:00"
