"""The consumer samples of the services' /metrics, and what they did in a window."""

import re
import urllib.request
from typing import Any

_SAMPLE = re.compile(r'^(oms_consumer_batch_seconds_(?:count|sum)|oms_consumer_messages_total)\{([^}]*)\}\s+(\S+)$')


def scrape(base_url: str) -> dict[str, float]:
    """The consumer samples of a service's /metrics: {'<metric>|<labels>': value}."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            found[f"{m.group(1)}|{m.group(2)}"] = float(m.group(3))
    return found


def consumer_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    """Per consumer of a service over the window: batches, messages applied, mean batch size and time,
    and the share of the window its (serial) consumer loop spent applying batches."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        metric, labels = key.split("|", 1)
        name = re.search(r'consumer="([^"]*)"', labels)
        if not name:
            continue
        c = out.setdefault(name.group(1), {"batches": 0.0, "batch_s": 0.0, "applied": 0.0, "other": 0.0})
        delta = value - before.get(key, 0.0)
        if metric.endswith("_count"):
            c["batches"] += delta
        elif metric.endswith("_sum"):
            c["batch_s"] += delta
        elif 'outcome="applied"' in labels:
            c["applied"] += delta
        else:
            c["other"] += delta
    for c in out.values():
        b = c["batches"]
        c["mean_batch_size"] = round((c["applied"] + c["other"]) / b, 1) if b else None
        c["mean_batch_ms"] = round(c["batch_s"] * 1000 / b, 1) if b else None
        c["busy_fraction"] = round(c["batch_s"] / wall, 3) if wall else None
        c["batch_s"] = round(c["batch_s"], 2)
        for k in ("batches", "applied", "other"):
            c[k] = int(c[k])
    return out


# --- the report ---------------------------------------------------------------------------------------
