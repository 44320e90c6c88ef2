#!/usr/bin/python3
"""tests/serve: `phasemap serve` driven with the official openai npm client (pinned in
tests/serve/package.json, installed by npm_setup.sh into the build dir): completions and chat,
streaming and not, equal to `phasemap generate`; chat on a model without a template is a clear
400. usage: test_openai.py PHASEMAP_BINARY NODE_MODULES_DIR (exit 77 = skipped: no stories260K model)."""
import json
import os
import http.client
import re
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.path.abspath(sys.argv[1])
NODE_MODULES = sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf")
if not os.path.exists(MODEL):
    print("SKIP: ../shared/models/stories260K.gguf is not present")
    sys.exit(77)
if not os.path.exists(os.path.join(NODE_MODULES, "openai", "package.json")):
    print(f"FAIL: the openai npm client is not installed in {NODE_MODULES} (tests/serve/npm_setup.sh installs it)")
    sys.exit(1)
ENV = dict(os.environ, PHASEMAP_THREADS="1")
procs, failures = [], []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def serve(model):
    p = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0", "--parallel", "2"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=ENV, text=True)
    procs.append(p)
    m = re.search(r"http://127\.0\.0\.1:(\d+)", p.stdout.readline())
    if not m:
        raise RuntimeError("server did not start")
    return p, int(m.group(1))


def client(port, mode, prompt, n):
    r = subprocess.run(["node", os.path.join(HERE, "openai_client.cjs"), str(port), mode, prompt, str(n)], capture_output=True,
                       text=True, timeout=120, env=dict(ENV, NODE_PATH=NODE_MODULES))
    check(r.returncode == 0, f"openai client ({mode}) ran: {r.stderr[-400:]}")
    return json.loads(r.stdout) if r.returncode == 0 else {}


def generate(model, prompt, n, *extra):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "run.npz")
        subprocess.run([BIN, "generate", "-m", model, "-p", prompt, "-n", str(n), "-o", out, "-q", *extra], check=True, env=ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return list(np.load(out)["token_ids"])


try:
    p, port = serve(MODEL)
    out = client(port, "completions", "Once upon a time", 12)
    ref = generate(MODEL, "Once upon a time", 12)
    check(out.get("models") == ["stories260K"], "models.list")
    check(out.get("plain", {}).get("ids") == ref, "completions.create: tokens equal generate's")
    check(out.get("stream", {}).get("ids") == ref, "completions.create stream: tokens equal generate's")
    check(out.get("stream", {}).get("text") == out.get("plain", {}).get("text"), "streamed text equals the non-streamed one")
    check(out.get("stream", {}).get("finish") == "length" and out["stream"].get("summary"), "stream: finish_reason and summary in the final chunk")
    err = client(port, "chat-error", "hi", 4).get("error") or {}
    check(err.get("status") == 400 and "chat template" in err.get("message", ""), f"chat without a template: 400 through the client ({err})")
    p.terminate()
    p.wait(timeout=20)
    # chat on a random-weight model with a real tokenizer and chat template (qwen2 vocab)
    d = tempfile.mkdtemp()
    q = os.path.join(d, "qwen2.gguf")
    subprocess.run([BIN, "make-model", "--arch", "qwen2", "-o", q, "--seed", "3"], check=True, env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    p, port = serve(q)
    out = client(port, "chat", "What is the capital of France?", 8)
    ref = generate(q, "What is the capital of France?", 8, "--chat")
    check(out.get("plain", {}).get("ids") == ref, "chat.completions.create: tokens equal generate --chat")
    check(out.get("stream", {}).get("ids") == ref, "chat.completions.create stream: tokens equal generate --chat")
    check(out.get("stream", {}).get("text") == out.get("plain", {}).get("text"), "chat: streamed content equals the message")
    # a message list through the chat template (qwen2's ChatML, written out here by hand)
    def chat(msgs):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/v1/chat/completions", body=json.dumps({"messages": msgs, "max_tokens": 2}), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Capital of France?"}]
    code, j = chat(conv)
    want = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n")
    check(code == 200 and j.get("phasemap", {}).get("summary", {}).get("prompt") == want,
          f"chat message list: the prompt is the ChatML of all messages (got {code} {str(j)[:200]})")
    for bad, what in (([{"role": "tool", "content": "x"}], "role"), ([], "empty"), ([{"role": "user"}], "no content"),
                      ([{"role": "user", "content": 3}], "content type")):
        code, j = chat(bad)
        check(code == 400 and j.get("error", {}).get("message"), f"chat messages ({what}) → 400 with a message (got {code})")
    p.terminate()
    p.wait(timeout=20)
finally:
    for pr in procs:
        if pr.poll() is None:
            pr.kill()
            pr.wait()
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all openai-client checks passed")
