"""MNN's console-script wrappers pip-install a logging SDK and upload telemetry. Prove that an
edgepack MNN conversion (including its child interpreters) does neither: an audit hook, loaded
into every Python process through sitecustomize, records process spawns and network connects."""

import json
import os
import subprocess
import sys

from conftest import load_manifest

HOOK = """
import json, os, sys
_log = os.environ["EDGEPACK_AUDIT_LOG"]
def _hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request", "os.system", "subprocess.Popen"):
        with open(_log, "a") as f:
            f.write(json.dumps({"event": event, "args": repr(args)[:300], "pid": os.getpid()}) + "\\n")
sys.addaudithook(_hook)
import atexit
def _modules():
    with open(_log, "a") as f:
        f.write(json.dumps({"event": "modules", "pid": os.getpid(),
                            "telemetry": sorted(m for m in sys.modules if m.startswith(("aliyun", "MNN.tools")))}) + "\\n")
atexit.register(_modules)
"""


def test_mnn_conversion_never_touches_the_network_or_pip(tmp_path, onnx_detector):
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / "audit.jsonl"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hook"), "EDGEPACK_AUDIT_LOG": str(log)}
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "edgepack", "convert", str(onnx_detector), "--formats", "mnn", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert {e["id"] for e in load_manifest(out)["artifacts"]} == {"mnn-fp32", "mnn-fp16", "mnn-int8-weight"}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    spawned = [e["args"] for e in events if e["event"] in ("subprocess.Popen", "os.system")]
    # the hook really ran in the converter's child interpreters: their spawn and their exit are logged
    assert sum("mnnconvert" in a for a in spawned) == 3
    assert len({e["pid"] for e in events if e["event"] == "modules"}) >= 4
    assert not [a for a in spawned if "pip" in a or "aliyun" in a]
    assert not [e for e in events if e["event"] in ("socket.connect", "socket.getaddrinfo", "urllib.Request")]
    assert all(e["telemetry"] == [] for e in events if e["event"] == "modules")
