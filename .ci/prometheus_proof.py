#!/usr/bin/env python3
"""The live-Prometheus proof of deploy/ (see .ci/live-prometheus).

`drive BASE_URL`: traffic through every part the dashboards show (users, wallets, issuance,
transfers, a refused one, holds posted and voided, the AI cache, analytics events, an error).

`check PROMETHEUS_URL DASHBOARDS_DIR RULES_FILE RUNBOOK`: every dashboard query and every
alert expression must parse and run in the live Prometheus, and every metric it names must
be among those Prometheus scraped; every alert rule must be loaded and evaluating without
error, and none pending or firing (the system is healthy); every runbook_url must name a
section of the runbook.
"""
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

# --- traffic ----------------------------------------------------------------------------


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
            return answer.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text) if text else None


def expect(answer, *statuses):
    status, body = answer
    if status not in statuses:
        sys.exit(f"unexpected answer {status}: {body}")
    return body


def drive(base):
    tag = uuid.uuid4().hex[:8]
    users = [
        expect(call(base, "POST", "/api/v1/users", {"email": f"{name}-{tag}@example.com"}), 201)["id"]
        for name in ("alice", "bob")
    ]
    wallets = [
        expect(call(base, "POST", "/api/v1/ledger/wallets", {"user_id": user}), 200)["id"]
        for user in users
    ]
    expect(call(base, "POST", "/api/v1/ledger/issuance", {"to": "rewards_pool", "amount": "1000"}), 201)
    expect(call(base, "POST", "/api/v1/ledger/rewards",
                {"user_id": users[0], "reason": "signup", "reference": tag, "amount": "100"}), 200)
    for amount in ("1", "2.5", "3"):
        expect(call(base, "POST", "/api/v1/ledger/transfers",
                    {"debit": wallets[0], "credit": wallets[1], "amount": amount}), 201)
    # Refused: more than the wallet holds.
    expect(call(base, "POST", "/api/v1/ledger/transfers",
                {"debit": wallets[1], "credit": wallets[0], "amount": "1000000"}), 422, 409)
    for action in ("post", "void"):
        held = expect(call(base, "POST", "/api/v1/ledger/transfers",
                           {"debit": wallets[0], "credit": wallets[1], "amount": "1",
                            "hold_timeout_ms": 60000}), 201)
        expect(call(base, "POST", f"/api/v1/ledger/transfers/{held['transfer']['id']}/{action}", {}), 200, 201)
    expect(call(base, "GET", f"/api/v1/ledger/wallets/{wallets[0]}/statement"), 200)
    cache = f"/api/v1/ai/users/{users[0]}/cache/menu"
    expect(call(base, "PUT", cache, {"value": {"dishes": ["soup"]}, "ttl_seconds": 60}), 200, 201, 204)
    expect(call(base, "GET", cache), 200)
    expect(call(base, "GET", f"/api/v1/ai/users/{users[1]}/cache/menu"), 404)
    expect(call(base, "POST", "/api/v1/analytics/events",
                {"kind": "order_placed", "user_id": users[0], "properties": {"total_cents": 2350}}), 202)
    expect(call(base, "GET", "/api/v1/no-such-route"), 404)
    print(f"drove traffic for users {users}")


# --- the proof ---------------------------------------------------------------------------

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$instance": ".*"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "atan2"}


def prometheus(url, path, **params):
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as answer:
        return json.load(answer)


def metric_names(expr):
    """The metric names a PromQL expression selects (label matchers, ranges, strings and
    grouping lists removed; what remains not followed by '(' is a metric name)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)", text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group(1) in KEYWORDS:
            continue
        names.add(match.group(1))
    return names


def with_grafana_variables(expr):
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def dashboard_queries(directory):
    import os
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name)) as file:
            dashboard = json.load(file)
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield f"{name} / {panel['title']}", with_grafana_variables(target["expr"])
        for variable in dashboard.get("templating", {}).get("list", []):
            found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable.get("definition", ""))
            if found:
                yield f"{name} / variable {variable['name']}", found.group(1)


def alert_names(path):
    """The alerts a rules file declares (read as text: no YAML library needed)."""
    with open(path) as file:
        return [found.group(1) for found in re.finditer(r"^\s*- alert:\s*(\S+)", file.read(), re.M)]


def anchors(runbook):
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    with open(runbook) as file:
        for line in file:
            heading = re.match(r"#+\s+(.*)", line)
            if heading:
                slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
                found.add(slug)
    return found


def check(url, dashboards, rules_file, runbook):
    scraped = set(prometheus(url, "/api/v1/label/__name__/values")["data"])
    failures = []
    queries = list(dashboard_queries(dashboards))
    # The rules as the live Prometheus loaded them from the file.
    loaded = {}
    for group in prometheus(url, "/api/v1/rules")["data"]["groups"]:
        for rule in group["rules"]:
            loaded[rule["name"]] = rule
    declared = alert_names(rules_file)
    for name in declared:
        if name not in loaded:
            failures.append(f"alert {name}: not loaded by Prometheus")
    alert_rules = [loaded[name] for name in declared if name in loaded]
    queries += [(f"alert {rule['name']}", rule["query"]) for rule in alert_rules]
    for where, expr in queries:
        try:
            answer = prometheus(url, "/api/v1/query", query=expr)
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read() or b"{}")
        if answer.get("status") != "success":
            failures.append(f"{where}: does not run: {answer.get('error')}\n    {expr}")
        missing = sorted(metric_names(expr) - scraped)
        if missing:
            failures.append(f"{where}: names metrics Prometheus never scraped: {', '.join(missing)}\n    {expr}")
    sections = anchors(runbook)
    for rule in alert_rules:
        name = rule["name"]
        if rule.get("health") != "ok":
            failures.append(f"alert {name}: evaluates with {rule.get('health')}: {rule.get('lastError')}")
        link = rule.get("annotations", {}).get("runbook_url", "")
        if not link.startswith("docs/runbook.md#") or link.split("#", 1)[1] not in sections:
            failures.append(f"alert {name}: runbook_url {link!r} is not a section of {runbook}")
    # The system under the proof is healthy: no alert may be pending or firing on it.
    for alert in prometheus(url, "/api/v1/alerts")["data"]["alerts"]:
        failures.append(f"alert {alert['labels'].get('alertname')} is {alert['state']} on a healthy system: "
                        f"{alert['labels']} {alert.get('annotations', {}).get('summary')}")
    for failure in failures:
        print("FAIL", failure)
    print(f"{len(queries)} queries ({len(alert_rules)} alerts) checked against {len(scraped)} scraped metrics; "
          f"{len(failures)} failure(s)")
    return not failures


def wait_for_scrapes(url, jobs, timeout=120):
    """Until every job's targets are up and Prometheus has rule evaluations behind it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            targets = prometheus(url, "/api/v1/targets")["data"]["activeTargets"]
            up = {target["labels"]["job"] for target in targets if target["health"] == "up"}
            if set(jobs) <= up:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(1)
    sys.exit(f"Prometheus never scraped {jobs} successfully: {prometheus(url, '/api/v1/targets')}")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "drive":
        drive(sys.argv[2])
    elif command == "wait":
        wait_for_scrapes(sys.argv[2], sys.argv[3:])
    elif command == "check":
        sys.exit(0 if check(*sys.argv[2:6]) else 1)
    else:
        sys.exit(f"unknown command {command}")
