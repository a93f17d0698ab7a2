"""A stand-in for a remote vision-language model: a local HTTP server speaking the
OpenAI chat-completions protocol. It recognises which known page an image shows
(by a tiny thumbnail) and answers with that page's transcript in the model
family's real format, boxes in that family's coordinates. Scripted faults: 429
with Retry-After, 5xx, slow answers, malformed JSON bodies, finish_reason=length, a lone
surrogate in the text, and any usage (none, negative, not a number, absurd).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def thumb(img: Image.Image) -> list[int]:
    return list(img.convert("L").resize((16, 16), Image.BILINEAR).tobytes())


def strip(img: Image.Image) -> list[int]:
    return list(img.convert("L").resize((96, 12), Image.BILINEAR).tobytes())


def _pad(box, size):
    x0, y0, x1, y1 = box
    p = 0.3 * (y1 - y0)
    return (max(0, x0 - p), max(0, y0 - p), min(size[0], x1 + p), min(size[1], y1 + p))


class FakeVLM:
    def __init__(self, pages: dict[str, tuple[Image.Image, list[dict]]]):
        """pages: page_id -> (source image, [{"text", "box": [x0, y0, x1, y1] in source pixels}])."""
        self.pages = {pid: (thumb(img), img.size, lines) for pid, (img, lines) in pages.items()}
        self.grays = {pid: np.asarray(img.convert("L")) for pid, (img, _) in pages.items()}
        # For crop requests (vlm_mode=crops): a small picture of every true line.
        self.lines = [(strip(img.crop(_pad(line["box"], img.size))), line["text"])
                      for img, lines in pages.values() for line in lines]
        self.requests: list[dict] = []  # what each request carried (headers, model, image size)
        self.attempts: dict[str, int] = defaultdict(int)
        self.fault = None  # callable(page_id, attempt) -> None | ("429", seconds) | ("500",) | ("slow", s) | ("badjson",) | ("length",) | ("empty",)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @classmethod
    def of_folder(cls, folder) -> "FakeVLM":
        """A stand-in that knows the pages of a generated folder (manifest.csv, truth.jsonl with boxes)."""
        pages = {}
        for line in (folder / "truth.jsonl").read_text().splitlines():
            rec = json.loads(line)
            pages[rec["page_id"]] = (Image.open(folder / f"{rec['page_id']}.png"), rec["lines"])
        return cls(pages)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def read_crop(self, img: Image.Image) -> str | None:
        """The true text of the lines a crop shows, found where the crop lies on a known page (a crop is
        an exact piece of it): every true line whose box is at least 30% inside the crop."""
        import cv2

        g = np.asarray(img.convert("L"))
        best = None
        for pid, page in self.grays.items():
            if g.shape[0] > page.shape[0] or g.shape[1] > page.shape[1]:
                continue
            diff, _, at, _ = cv2.minMaxLoc(cv2.matchTemplate(page, g, cv2.TM_SQDIFF))
            if best is None or diff < best[0]:
                best = (diff, pid, at)
        if best is None or best[0] / g.size > 4.0:  # not a piece of any known page
            return None
        _, pid, (x, y) = best
        cx0, cy0, cx1, cy1 = x, y, x + g.shape[1], y + g.shape[0]
        found = []
        for line in self.pages[pid][2]:
            x0, y0, x1, y1 = line["box"]
            inter = max(0, min(x1, cx1) - max(x0, cx0)) * max(0, min(y1, cy1) - max(y0, cy0))
            if inter >= 0.3 * max(1, (x1 - x0) * (y1 - y0)):
                found.append(line["text"])
        return " ".join(found)

    def identify(self, img: Image.Image) -> str:
        t = thumb(img)
        return min(self.pages, key=lambda pid: sum(abs(a - b) for a, b in zip(self.pages[pid][0], t)))

    def answer(self, family: str, pid: str, sent: tuple[int, int]) -> str:
        _, (sw, sh), lines = self.pages[pid]
        if family == "gemma":
            return "\n".join(line["text"] for line in lines)
        if family == "deepseek":
            parts = []
            for line in lines:
                x0, y0, x1, y1 = line["box"]
                grid = [round(x0 / sw * 999), round(y0 / sh * 999), round(x1 / sw * 999), round(y1 / sh * 999)]
                parts.append(f"<|ref|>{line['text']}<|/ref|><|det|>[{json.dumps(grid)}]<|/det|>")
            return "\n".join(parts)
        fx, fy = sent[0] / sw, sent[1] / sh  # qwen: pixels of the image it was sent
        items = [{"bbox_2d": [round(b[0] * fx), round(b[1] * fy), round(b[2] * fx), round(b[3] * fy)], "text": line["text"]}
                 for line in lines for b in [line["box"]]]
        return "Here is the text:\n```json\n" + json.dumps(items, indent=1) + "\n```"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][0]["content"]
                url = next(c["image_url"]["url"] for c in content if c["type"] == "image_url")
                prompt = next(c["text"] for c in content if c["type"] == "text")
                mime, b64 = url[5:].split(";base64,")
                img = Image.open(io.BytesIO(base64.b64decode(b64)))
                if prompt.startswith("Transcribe the text in this image"):  # one line crop
                    text = fake.read_crop(img)
                    if text is None:  # a resized crop: the nearest true line by its picture
                        t = strip(img)
                        text = min(fake.lines, key=lambda ln: sum(abs(a - b) for a, b in zip(ln[0], t)))[1]
                    text = text or "."  # a crop with no text in it: the model says so
                    with fake.lock:
                        fake.requests.append({"page": None, "crop": img.size, "auth": self.headers.get("Authorization"),
                                              "mime": mime, "format": img.format, "size": img.size, "model": body["model"]})
                    reply = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}}
                    return self._send(200, json.dumps(reply).encode())
                pid = fake.identify(img)
                family = "deepseek" if "grounding" in prompt else "qwen" if "bbox_2d" in prompt else "gemma"
                with fake.lock:
                    fake.attempts[pid] += 1
                    attempt = fake.attempts[pid]
                    fake.requests.append({"page": pid, "attempt": attempt, "auth": self.headers.get("Authorization"),
                                          "mime": mime, "format": img.format, "size": img.size,
                                          "model": body["model"], "max_tokens": body.get("max_tokens")})
                fault = fake.fault(pid, attempt) if fake.fault else None
                if fault and fault[0] == "429":
                    return self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": str(fault[1])})
                if fault and fault[0] == "echo":  # a proxy echoing what it was sent, cut where it likes
                    auth = self.headers.get("Authorization") or ""
                    key = auth.split(" ", 1)[-1]
                    msg = (f"bad gateway: {auth} | key={key[:14]} | b64={base64.b64encode(key.encode()).decode()} | ")
                    msg += "x" * (290 - len(msg) - 12) + " again: " + auth  # the key straddles character 300
                    return self._send(502, json.dumps({"error": {"message": msg}}).encode())
                if fault and fault[0] == "500":
                    return self._send(500, b'{"error": {"message": "upstream overloaded"}}')
                if fault and fault[0] == "slow":
                    time.sleep(fault[1])
                if fault and fault[0] == "badjson":
                    return self._send(200, b'{"id": "x", "choices": [ {"message": ')
                text = "" if fault and fault[0] == "empty" else fake.answer(family, pid, img.size)
                if fault and fault[0] == "raw":  # the model's answer, whatever it is
                    text = fault[1]
                if fault and fault[0] == "surrogate":  # JSON may carry half a UTF-16 pair; no UTF-8 file can
                    text = text.replace('"text": "', '"text": "\udc80', 1) if '"text": "' in text else text + "\udc80"
                finish = "length" if fault and fault[0] == "length" else "stop"
                usage = {"prompt_tokens": 1000 + img.size[0] * img.size[1] // 784, "completion_tokens": len(text) // 4,
                         "total_tokens": 0}
                if fault and fault[0] == "usage":  # what the API says it billed: None leaves usage out
                    usage = fault[1](usage) if callable(fault[1]) else fault[1]
                with fake.lock:
                    fake.requests[-1]["usage"] = usage
                reply = {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                }
                if usage is not None:
                    reply["usage"] = usage
                self._send(200, json.dumps(reply).encode())

        return Handler
