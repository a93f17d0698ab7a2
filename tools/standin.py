"""A stand-in for a vision-language API that answers from an answer key: a local HTTP server
speaking OpenAI chat completions, so that `just eval` can measure a cascade through the real
pipeline (planner, Lithops workers, the VLM engine's requests, `best_text`) with an API that reads
right whatever it is sent. The key maps an image, as the engine sends it, to its true text.

Requests are keyed by what they ask (a line crop, with the VLM engine's crop prompt, or a page)
and the image's pixels, not its bytes: what the server decodes is what the eval built. A page that
is all one line is then two keys, as it is two requests. A request not in the key is answered with
no text and counted in `unknown`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from engines.vlm import CROP_PROMPT


def image_key(data: bytes, crop: bool) -> str:
    """The key of a request for an encoded image, a line's crop or a page: a digest of which, and of
    the image's mode, size and pixels."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return hashlib.sha1(f"{'crop' if crop else 'page'}:{img.mode}:{img.size}".encode() + img.tobytes()).hexdigest()


def completion(model: str, text: str, prompt_tokens: int, finish: str = "stop") -> dict:
    """A chat.completion body answering `text`."""
    return {"id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": prompt_tokens + len(text) // 4 + 1}}


class AnswerKeyServer:
    """`with AnswerKeyServer({image_key(...): text}) as api:` serves on `api.base_url`; `api.asked`
    lists the key of every request, in order; `api.unknown` counts those not in the key."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.asked: list[str] = []
        self.unknown = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "AnswerKeyServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][0]["content"]
                url = next(c["image_url"]["url"] for c in content if c["type"] == "image_url")
                prompt = next((c["text"] for c in content if c["type"] == "text"), "")
                data = base64.b64decode(url.split(";base64,", 1)[1])
                key = image_key(data, crop=prompt == CROP_PROMPT)
                text = api.answers.get(key)
                with api._lock:
                    api.asked.append(key)
                    api.unknown += text is None
                w, h = Image.open(io.BytesIO(data)).size
                reply = json.dumps(completion(body["model"], text or "", 85 + w * h // 784)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        return Handler
