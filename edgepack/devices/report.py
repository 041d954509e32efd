"""Device-test reports: report.json (everything), junit.xml (one test case per device/backend/
accelerator, for CI dashboards) and report.html (self-contained, one latency plot per case drawn
by matplotlib and embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from edgepack.manifest import write_json_atomic


def write_reports(report: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "report.json", report)
    (folder / "junit.xml").write_text(junit_xml(report), encoding="utf-8")
    (folder / "report.html").write_text(html_report(report), encoding="utf-8")


def _case_name(case: dict[str, Any]) -> str:
    return f"{case['backend']}/{case['accelerator']} ({case['artifact']})"


def junit_xml(report: dict[str, Any]) -> str:
    cases = report["cases"]
    suites = ET.Element("testsuites", name="edgepack device-test")
    for device in report["devices"]:
        mine = [c for c in cases if c["device"] == device["serial"]]
        suite = ET.SubElement(suites, "testsuite", name=f"{device['model']} [{device['serial']}]",
                              tests=str(len(mine)), failures=str(sum(c["status"] == "failed" for c in mine)),
                              skipped=str(sum(c["status"] == "skipped" for c in mine)), timestamp=report["started"])
        props = ET.SubElement(suite, "properties")
        for key in ("soc", "abi", "sdk", "thermal_status"):
            ET.SubElement(props, "property", name=key, value=str(device.get(key)))
        for case in mine:
            element = ET.SubElement(suite, "testcase", classname=f"edgepack.device.{device['serial']}",
                                    name=_case_name(case), time=f"{case['seconds']:.3f}")
            if case["status"] == "failed":
                ET.SubElement(element, "failure", message=case["message"]).text = json.dumps(case["metrics"], indent=1)
            elif case["status"] == "skipped":
                ET.SubElement(element, "skipped", message=case["message"])
            else:
                ET.SubElement(element, "system-out").text = json.dumps({"latency": case["latency"], "metrics": case["metrics"]})
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def _plot(case: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = case["latencies_ms"]
    fig, ax = plt.subplots(figsize=(6, 2.4), dpi=90)
    ax.plot(range(1, len(values) + 1), values, marker=".", linewidth=1)
    for key, style in (("median_ms", "--"), ("p90_ms", ":")):
        if key in case["latency"]:
            ax.axhline(case["latency"][key], linestyle=style, linewidth=1, label=f"{key[:-3]} {case['latency'][key]:.2f} ms")
    ax.set_xlabel("iteration")
    ax.set_ylabel("ms")
    ax.set_title(_case_name(case), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def html_report(report: dict[str, Any]) -> str:
    e = html.escape
    rows, plots = [], []
    for case in report["cases"]:
        lat = case["latency"]
        metric = case["metrics"]
        rows.append(
            f"<tr class='{e(case['status'])}'><td>{e(case['device'])}</td><td>{e(case['backend'])}</td><td>{e(case['accelerator'])}</td>"
            f"<td>{e(case['artifact'])}</td><td>{e(case['status'])}</td>"
            f"<td>{metric.get('cosine', float('nan')):.6f}</td><td>{metric.get('task_agreement', '-')}</td>"
            + "".join(f"<td>{lat.get(k, '-')}</td>" for k in ("min_ms", "median_ms", "p90_ms", "p99_ms"))
            + f"<td>{e(case['message'])}</td></tr>"
        )
        if case["latencies_ms"]:
            plots.append(f"<figure><img alt='latency {e(_case_name(case))}' src='data:image/png;base64,{_plot(case)}'></figure>")
    devices = "".join(
        f"<li><b>{e(d['manufacturer'])} {e(d['model'])}</b> [{e(d['serial'])}]: {e(str(d['soc']))}, {e(d['abi'])}, "
        f"Android {e(str(d['release']))} (SDK {d['sdk']}), free {d['free_kb']} KB, thermal {e(str(d['thermal_status']))}</li>"
        for d in report["devices"]
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgepack device-test: {e(report['model'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
tr.failed{{background:#fdd}}tr.skipped{{background:#eee}}tr.passed{{background:#efe}}figure{{display:inline-block;margin:8px}}</style></head>
<body><h1>edgepack device-test: {e(report['model'])}</h1><p>{e(report['started'])}, {report['options']['iterations']} iterations,
{report['options']['warmup']} warm-up, {report['options']['threads']} threads</p><ul>{devices}</ul>
<table><tr><th>device</th><th>backend</th><th>accelerator</th><th>artifact</th><th>status</th><th>cosine</th><th>task agreement</th>
<th>min ms</th><th>median ms</th><th>p90 ms</th><th>p99 ms</th><th>message</th></tr>{''.join(rows)}</table>
{''.join(plots)}</body></html>
"""
