"""The summary table printed at the end of convert and validate."""

from __future__ import annotations

from typing import Any

from edgepack import console

COLUMNS = ("artifact", "precision", "size", "cosine", "max-abs", "PSNR dB", "task agr.", "latency ms", "status")


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return format(value, spec)


def artifact_row(entry: dict[str, Any]) -> list[str]:
    v = entry.get("validation") or {}
    status = entry.get("status", "-")
    colour = {"ok": "green", "degraded": "yellow", "failed": "red"}.get(status, "cyan")
    task = f"{v['task_agreement']:.3f}" if v.get("task_agreement") is not None else "-"
    latency = v.get("latency", {}).get("median_ms")
    return [
        entry["id"],
        entry["precision"],
        f"{entry['size_bytes'] / 1e6:.2f} MB",
        _fmt(v.get("cosine"), ".6f"),
        _fmt(v.get("max_abs"), ".2e"),
        _fmt(v.get("psnr"), ".1f"),
        task,
        _fmt(latency, ".2f"),
        f"[{colour}]{status}[/{colour}]",
    ]


def print_summary(manifest: dict[str, Any], out_dir: str) -> None:
    rows = [artifact_row(e) for e in manifest["artifacts"]]
    columns = COLUMNS
    if "dataset" in manifest:  # task metric on the labelled dataset, with its delta to the reference
        key = "top1" if manifest["model"]["task"] == "classify" else "map50_95"
        columns = (*COLUMNS[:-1], f"{'top-1' if key == 'top1' else 'mAP50-95'} (Δ)", COLUMNS[-1])
        for row, entry in zip(rows, manifest["artifacts"]):
            m = entry.get("dataset_metric")
            row.insert(len(row) - 1, f"{m[key]:.4f} ({m[key + '_delta']:+.4f})" if m and key in m else "not measured" if m else "-")
        reference = manifest["dataset"]["reference"][key]
        console.info(f"reference (onnxruntime) on {manifest['dataset']['path']}: {key} {reference:.4f}")
    model = manifest["model"]
    console.table(f"{model['name']} ({model['task']}) -> {out_dir}", columns, rows)
    for entry in manifest["artifacts"]:
        reasons = (entry.get("validation") or {}).get("reasons") or []
        if reasons:
            console.stdout.print(f"  {entry['id']}: {'; '.join(reasons)}", markup=False)


def print_sensitivity(manifest: dict[str, Any]) -> None:
    """`--explain`: per-layer int8 sensitivity, worst first."""
    for entry in manifest["artifacts"]:
        rows = (entry.get(entry["format"]) or {}).get("sensitivity")
        if rows:
            method = ((entry.get(entry["format"]) or {}).get("calibration") or {}).get("method", "")
            console.table(
                f"int8 sensitivity of {entry['id']}: output when only this layer is int8 (worst first); "
                f"activation range: absmax, the {method} threshold and the share of values it clips",
                ("layer", "PSNR dB", "cosine", "absmax", "threshold", "clipped %"),
                [(r["layer"], f"{r['psnr']:.1f}", f"{r['cosine']:.9f}", _fmt(r.get("absmax"), ".4g"),
                  _fmt(r.get("threshold"), ".4g"), _fmt(r.get("clipped_percent"), ".3f")) for r in rows[:15]],
            )


DEVICE_COLUMNS = ("device", "backend", "accel.", "artifact", "cosine", "task agr.", "median ms", "p90 ms", "p99 ms", "status")


def print_device_report(report: dict[str, Any]) -> None:
    rows = []
    for case in report["cases"]:
        colour = {"passed": "green", "failed": "red", "skipped": "yellow"}[case["status"]]
        m, lat = case["metrics"], case["latency"]
        rows.append([
            case["device"], case["backend"], case["accelerator"], case["artifact"],
            _fmt(m.get("cosine"), ".6f"), _fmt(m.get("task_agreement"), ".3f"),
            _fmt(lat.get("median_ms"), ".2f"), _fmt(lat.get("p90_ms"), ".2f"), _fmt(lat.get("p99_ms"), ".2f"),
            f"[{colour}]{case['status']}[/{colour}]",
        ])
    console.table(f"device-test: {report['model']}", DEVICE_COLUMNS, rows)
    for case in report["cases"]:
        if case["message"]:
            console.info(f"  {case['device']} {case['backend']}/{case['accelerator']}: {case['message']}")
