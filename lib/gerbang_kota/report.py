"""Monitoring and evaluation report for the command center, from Prometheus' HTTP API.

    python3 -m gerbang_kota.report --prometheus http://127.0.0.1:9090 \
        --start 2026-11-02T00:00 --end 2026-11-07T00:00 --out report/2026-11-w45 \
        [--inventory inventory/production] [--step 60]

For the chosen period, per site: allocation vs peak and 95th-percentile use, working-hours
utilisation, top domains and categories, blocked attempts, active vs registered devices; SVG
plots; report.md + report.html + figures.json; and a suggested reallocation inside the contract
as a patch of the inventory's allocations (reallocation.patch), checked against the policy
compiler when --inventory is given.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

from gerbang_kota import report_figures as figures
from gerbang_kota import report_realloc as realloc
from gerbang_kota import report_svg as svg
from gerbang_kota import schedule

# Bit rate on the collector's clock: the collector reads the counters on its own timer and
# Prometheus stamps them at scrape time, so rate() alone is off by the drift between the two
# (up to a whole collector interval, +25 % on a 60 s window, and the peak picks exactly those).
# Dividing by the rate of the collector's run timestamp (same samples, same extrapolation) gives
# bytes / collector seconds.
SITE_BITS = ('sum by (site) (rate(gerbang_tc_bytes_total{{class="site",direction="{direction}"}}[{window}])'
             ' / on (site) group_left () (max by (site) (rate(gerbang_collector_last_run_timestamp_seconds[{window}])) > 0)) * 8')
SITE_BYTES = 'sum by (site) (gerbang_tc_bytes_total{{class="site",direction="{direction}"}})'
ALLOCATION = 'max by (site, kind) (gerbang_allocation_bits{{direction="{direction}"}})'


class Prometheus:
    """The two HTTP API calls the report needs."""

    def __init__(self, url: str, timeout: float = 30):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict) -> list[dict]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=self.timeout) as response:  # noqa: S310 (operator-given URL)
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus: {body.get('error', body)}")
        return body["data"]["result"]

    def range(self, query: str, start: float, end: float, step: float) -> dict[tuple, list[tuple[float, float]]]:
        result = self._get("/api/v1/query_range", {"query": query, "start": start, "end": end, "step": step})
        return {tuple(sorted(r["metric"].items())): [(float(t), float(v)) for t, v in r["values"]] for r in result}

    def instant(self, query: str, at: float) -> list[tuple[dict, float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._get("/api/v1/query", {"query": query, "time": at})]


def _by(result: dict, label: str) -> dict[str, list[tuple[float, float]]]:
    return {dict(key).get(label, ""): values for key, values in result.items()}


def gather(prom: Prometheus, start: float, end: float, step: float, timezone: str, working: str | list[dict],
           top_n: int = 10) -> dict:
    """Every figure of the report, as plain data (also written to figures.json). ``working``: the
    city's compiled working-hours segments, or a text such as "mon-fri 07:00-16:00"."""
    window = f"{max(int(step * 2), 60)}s"
    period = f"{max(int(end - start), 60)}s"
    hours = figures.parse_working_hours(working) if isinstance(working, str) else working
    if not isinstance(working, str):
        working = "; ".join(f"{','.join(w['days'])} {w['start']}-{w['end']}" for w in schedule.windows_from_segments(working))
    sites: dict[str, dict] = {}
    for direction in ("download", "upload"):
        bits = _by(prom.range(SITE_BITS.format(direction=direction, window=window), start, end, step), "site")
        raw = _by(prom.range(SITE_BYTES.format(direction=direction), start, end, step), "site")
        allocation: dict[str, dict[str, float]] = {}
        for labels, value in prom.instant(ALLOCATION.format(direction=direction), end):
            allocation.setdefault(labels["site"], {})[labels["kind"]] = value
        for site in sorted(set(bits) | set(allocation)):
            alloc = allocation.get(site, {})
            entry = figures.site_figures(bits.get(site, []), alloc.get("ceil", 0.0), alloc.get("rate", 0.0), timezone, hours,
                                         raw.get(site))
            entry["bytes"] = figures.counter_increase(raw.get(site, []))
            sites.setdefault(site, {})[direction] = entry
            sites[site].setdefault("series", {})[direction] = bits.get(site, [])

    def per_site(query: str, label: str | None = None) -> dict:
        found: dict = {}
        for labels, value in prom.instant(query, end):
            site = labels.get("site", "")
            if label is None:
                found[site] = value
            else:
                found.setdefault(site, {})[labels.get(label, "")] = value
        return found

    # Counters from the logs: increases over the same grid as the traffic (series born inside the
    # period counted from zero), not PromQL increase() (extrapolated, blind to new series).
    first_seen = {site: values[0][0] for site, values in
                  _by(prom.range("max by (site) (gerbang_collector_last_run_timestamp_seconds)", start, end, step), "site").items()
                  if values}

    def increases(selector: str, label: str | None = None) -> dict:
        grouping = "site" + (f", {label}" if label else "")
        found: dict = {}
        for key, values in prom.range(f"sum by ({grouping}) ({selector})", start, end, step).items():
            labels = dict(key)
            site = labels.get("site", "")
            value = figures.window_increase(values, first_seen.get(site))
            if label is None:
                found[site] = found.get(site, 0.0) + value
            else:
                found.setdefault(site, {})[labels.get(label, "")] = value
        return found

    denied = increases('gerbang_proxy_requests_total{decision="denied"}', "category")
    dns_blocked = increases("gerbang_dns_blocked_total", "category")
    allowed = increases('gerbang_proxy_requests_total{decision="allowed"}')
    domain_bytes = increases("gerbang_proxy_domain_bytes_total", "domain")
    domain_requests = increases("gerbang_proxy_domain_requests_total", "domain")
    active = per_site(f"max by (site) (max_over_time(gerbang_devices_active[{period}]))")
    unregistered = per_site(f"max by (site) (max_over_time(gerbang_devices_active_unregistered[{period}]))")
    registered = per_site(f"max by (site) (last_over_time(gerbang_devices_registered[{period}]))")
    # Registered devices that sent or received anything in the period (nftables counters of the
    # device's address: forwarded and proxied traffic, DNS included).
    with_traffic = {site: {device: value for device, value in devices.items() if value > 0}
                    for site, devices in increases("gerbang_device_bytes_total", "device").items()}
    for site in sorted(set(sites) | set(registered)):
        entry = sites.setdefault(site, {})
        blocked = {}
        for source in (denied.get(site, {}), dns_blocked.get(site, {})):
            for category, count in source.items():
                blocked[category] = blocked.get(category, 0.0) + count
        entry.update({
            "blocked_by_category": dict(figures.top(blocked, 50)),
            "proxy_denied": sum(denied.get(site, {}).values()),
            "dns_blocked": sum(dns_blocked.get(site, {}).values()),
            "proxy_allowed": allowed.get(site, 0.0),
            "top_domains_bytes": figures.top(domain_bytes.get(site, {}), top_n),
            "top_domains_requests": figures.top(domain_requests.get(site, {}), top_n),
            "devices_active_max": active.get(site, 0.0),
            "devices_unregistered_max": unregistered.get(site, 0.0),
            "devices_registered": registered.get(site, 0.0),
            "devices_with_traffic": sorted(with_traffic.get(site, {})),
        })
    city_domains: dict[str, float] = {}
    city_categories: dict[str, float] = {}
    for entry in sites.values():
        for domain, value in entry.get("top_domains_bytes", []):
            city_domains[domain] = city_domains.get(domain, 0.0) + value
        for category, value in entry.get("blocked_by_category", {}).items():
            city_categories[category] = city_categories.get(category, 0.0) + value
    return {
        "start": start, "end": end, "step": step, "timezone": timezone, "working_hours": working,
        "sites": sites,
        "city": {"top_domains_bytes": figures.top(city_domains, top_n), "blocked_by_category": figures.top(city_categories, 50)},
    }


def reallocation(data: dict, city: dict, **options) -> dict[str, dict]:
    """Suggestion from measured download use and the compiled city (devices, contract)."""
    inputs = {}
    for name, site in city["sites"].items():
        measured = data["sites"].get(name, {}).get("download", {})
        bandwidth = site["bandwidth"]
        inputs[name] = {
            "measured": bool(measured) and measured.get("samples", 1) > 0,
            "rate_mbit": bandwidth["rate_mbit"], "ceil_mbit": bandwidth["ceil_mbit"],
            "work_p95_mbit": measured.get("work_p95_mbit", 0.0), "peak_mbit": measured.get("peak_mbit", 0.0),
            "work_samples": measured.get("work_samples", 1),
            "devices": len(site["devices"]), "device_rate_mbit": bandwidth["device_rate_mbit"],
        }
    return realloc.suggest(inputs, city["contract_mbit"], **options)


def check_patched_inventory(inventory: Path, new_hosts: str, repo_root: Path) -> list[dict]:
    """Compile the city with the patched hosts.yml (same group_vars/host_vars); its errors."""
    from gerbang_kota.inventory import compile_inventory

    with tempfile.TemporaryDirectory(prefix="gerbang-realloc-") as tmp:
        copy = Path(tmp) / inventory.name
        copy.mkdir()
        (copy / "hosts.yml").write_text(new_hosts, encoding="utf-8")
        for linked in ("group_vars", "host_vars"):
            if (inventory / linked).exists():
                (copy / linked).symlink_to((inventory / linked).resolve())
        return compile_inventory(copy, repo_root)["errors"]


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def render_markdown(data: dict, suggestion: dict | None, titles: dict[str, str]) -> str:
    tz = ZoneInfo(data["timezone"])
    start = _dt.datetime.fromtimestamp(data["start"], tz).strftime("%Y-%m-%d %H:%M")
    end = _dt.datetime.fromtimestamp(data["end"], tz).strftime("%Y-%m-%d %H:%M %Z")
    out = [f"# Gerbang Kota: use of the internet, {start} – {end}", "",
           f"Samples every {data['step']:g} s; working hours {data['working_hours']} ({data['timezone']}).",
           "Bandwidth is what the gateway's shaper sent (layer-2 bytes, the unit of the allocation).", "",
           "## Allocation and use (download)", "", "![allocation vs use](allocation.svg)", "",
           "| site | allocation (rate / ceiling) | peak | 95th pct | working-hours mean | working-hours utilisation | data |",
           "|---|---|---|---|---|---|---|"]
    for name, site in sorted(data["sites"].items()):
        d = site.get("download")
        if not d:
            continue
        out.append(f"| {name} | {_fmt(d['rate_mbit'], 0)} / {_fmt(d['ceil_mbit'], 0)} Mbit/s | {_fmt(d['peak_mbit'], 2)} | "
                   f"{_fmt(d['p95_mbit'], 2)} | {_fmt(d['work_mean_mbit'], 2)} | {d['work_utilisation']:.0%} | "
                   f"{_fmt(d['bytes'] / 1e6, 1)} MB |")
    out += ["", "## Devices and blocked attempts", "",
            "| site | title | registered | with traffic | active (max) | unregistered active (max) | proxy denied | DNS blocked | top blocked categories |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, site in sorted(data["sites"].items()):
        cats = ", ".join(f"{c} {int(v)}" for c, v in list(site.get("blocked_by_category", {}).items())[:3])
        out.append(f"| {name} | {titles.get(name, '')} | {int(site.get('devices_registered', 0))} | {len(site.get('devices_with_traffic', []))} | "
                   f"{int(site.get('devices_active_max', 0))} | "
                   f"{int(site.get('devices_unregistered_max', 0))} | {int(site.get('proxy_denied', 0))} | "
                   f"{int(site.get('dns_blocked', 0))} | {cats} |")
    out += ["", "## Top domains (city, bytes through the proxy)", "", "| domain | MB |", "|---|---|"]
    out += [f"| {domain} | {_fmt(value / 1e6, 2)} |" for domain, value in data["city"]["top_domains_bytes"]]
    out += ["", "## Blocked attempts by category (city)", "", "| category | attempts |", "|---|---|"]
    out += [f"| {category} | {int(value)} |" for category, value in data["city"]["blocked_by_category"]]
    out += ["", "## Per site", ""]
    for name, site in sorted(data["sites"].items()):
        title = titles.get(name, "")
        out += [f"### {name}" + (f" — {title}" if title else ""), ""]
        if site.get("download"):
            out += [f"![{name}](site-{name}.svg)", ""]
        requests = dict(site.get("top_domains_requests", []))
        out += ["| top domain (through the proxy) | MB | requests |", "|---|---|---|"]
        out += [f"| {domain} | {_fmt(value / 1e6, 2)} | {int(requests.get(domain, 0))} |"
                for domain, value in site.get("top_domains_bytes", [])] or ["| – | – | – |"]
        out += ["", "| blocked category | attempts |", "|---|---|"]
        out += [f"| {category} | {int(value)} |" for category, value in site.get("blocked_by_category", {}).items()] \
            or ["| – | – |"]
        out.append("")
    if suggestion is not None:
        changed = {n: s for n, s in suggestion.items() if s["reason"]}
        out += ["", "## Suggested reallocation", "",
                "Inside the contract; apply with `git apply reallocation.patch`, then run `ansible-playbook playbooks/validate.yml`.", "",
                "| site | guaranteed | ceiling | why |", "|---|---|---|---|"]
        out += [f"| {n} | {s['rate_mbit']} | {s['ceil_mbit']} | {s['reason']} |" for n, s in sorted(changed.items())]
        if not changed:
            out.append("| – | – | – | no change suggested |")
    return "\n".join(out) + "\n"


def render_html(markdown: str) -> str:
    """A dependency-free HTML rendering: tables and images of the Markdown report."""
    body, table = [], False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not table:
                body.append("<table>")
                table = True
                body.append("<tr>" + "".join(f"<th>{escape(c)}</th>" for c in cells) + "</tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("</table>")
            table = False
        if line.startswith("!["):
            alt, _, src = line[2:].partition("](")
            body.append(f'<p><img alt="{escape(alt)}" src="{escape(src.rstrip(")"))}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{escape(line.lstrip('#').strip())}</h{level}>")
        elif line:
            body.append(f"<p>{escape(line)}</p>")
    if table:
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Gerbang Kota report</title><style>{style}</style></head><body>\n" \
           + "\n".join(body) + "\n</body></html>\n"


def write_report(data: dict, out: Path, suggestion: dict | None = None, patch: str | None = None,
                 titles: dict[str, str] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    sites = sorted(n for n, s in data["sites"].items() if s.get("download"))

    def put(name: str, text: str) -> None:
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)

    put("allocation.svg", svg.bars("Download: allocation vs use", sites, {
        "ceiling": [data["sites"][n]["download"]["ceil_mbit"] for n in sites],
        "guaranteed": [data["sites"][n]["download"]["rate_mbit"] for n in sites],
        "95th percentile": [data["sites"][n]["download"]["p95_mbit"] for n in sites],
        "peak": [data["sites"][n]["download"]["peak_mbit"] for n in sites],
    }, "Mbit/s"))
    for name in sites:
        site = data["sites"][name]
        series = {direction: [(t, v / 1e6) for t, v in site["series"].get(direction, [])] for direction in ("download", "upload")}
        put(f"site-{name}.svg", svg.lines(f"{name}: traffic", series, "Mbit/s", {"ceiling": site["download"]["ceil_mbit"]}))
    titles = titles or {}
    plain = {**data, "sites": {n: {**{k: v for k, v in s.items() if k != "series"}, "title": titles.get(n, "")}
                               for n, s in data["sites"].items()}}
    put("figures.json", json.dumps({**plain, "suggestion": suggestion}, indent=1, sort_keys=True))
    markdown = render_markdown(data, suggestion, titles)
    put("report.md", markdown)
    put("report.html", render_html(markdown))
    if patch is not None:
        put("reallocation.patch", patch)
    return written


def _timestamp(text: str, timezone: str) -> float:
    moment = _dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gerbang Kota monitoring report from Prometheus.")
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--start", required=True, help="ISO time (city time zone unless given), or -<seconds> before --end")
    parser.add_argument("--end", default="now", help="ISO time or 'now'")
    parser.add_argument("--step", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--timezone", help="default: the compiled city's (gerbang_timezone); needs --inventory")
    parser.add_argument("--working-hours", help='e.g. "mon-fri 07:00-16:00; sat 08:00-12:00"; default: the compiled '
                        "city's working hours (gerbang_working_hours); needs --inventory")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--inventory", type=Path, help="inventory dir: enables the reallocation suggestion and its check")
    parser.add_argument("--hosts-file", type=Path, help="file the patch is made against (default: <inventory>/hosts.yml)")
    args = parser.parse_args(argv)
    city = None
    if args.inventory:
        from gerbang_kota.inventory import compile_inventory

        city = compile_inventory(args.inventory, Path(__file__).resolve().parents[2])
        if city["errors"]:
            print("the policy does not validate:", *[e.get("line", e) for e in city["errors"]], sep="\n  ", file=sys.stderr)
            return 2
    elif args.timezone is None or args.working_hours is None:
        parser.error("without --inventory, give --timezone and --working-hours")
    args.timezone = args.timezone or city["timezone"]
    working = args.working_hours or city["working_hours"]["segments"]

    end = _dt.datetime.now().timestamp() if args.end == "now" else _timestamp(args.end, args.timezone)
    start = end - float(args.start[1:]) if args.start.startswith("-") else _timestamp(args.start, args.timezone)
    data = gather(Prometheus(args.prometheus), start, end, args.step, args.timezone, working, args.top)
    suggestion = patch = None
    titles = {}
    if city is not None:
        repo_root = Path(__file__).resolve().parents[2]
        titles = {name: site["title"] for name, site in city["sites"].items()}
        suggestion = reallocation(data, city)
        hosts_file = args.hosts_file or args.inventory / "hosts.yml"
        new_hosts, patch = realloc.patch_inventory(hosts_file.read_text(encoding="utf-8"), suggestion,
                                                   str(hosts_file.resolve().relative_to(repo_root)) if hosts_file.resolve().is_relative_to(repo_root) else str(hosts_file))
        # The patched file is compiled with its own inventory's group_vars/host_vars: the same
        # check as playbooks/validate.yml (the lab report may patch the production file it is
        # generated from).
        errors = check_patched_inventory(hosts_file.parent, new_hosts, repo_root)
        if errors:
            print("the suggested reallocation does not validate:", *[e.get("line", e) for e in errors], sep="\n  ", file=sys.stderr)
            return 2
    written = write_report(data, args.out, suggestion, patch, titles)
    print(json.dumps({"out": str(args.out), "files": [p.name for p in written], "sites": len(data["sites"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
