"""Vision-language models over an OpenAI-compatible chat API: qwen, gemma, deepseek.

One adapter per model family: its prompt, its answer format and how its boxes
map back to source pixels. OpenRouter is the default endpoint; `base_url` points
a method at a self-hosted vLLM, SGLang or Ollama server.

    qwen      JSON lines with boxes: [{"bbox_2d": [x0, y0, x1, y1], "text": ...}];
              pixels of the image sent (Qwen2.5-VL) or a 0-1000 grid (Qwen3-VL, coords=norm1000)
    deepseek  DeepSeek-OCR grounding: <|ref|>text<|/ref|><|det|>[[x0, y0, x1, y1]]<|/det|>, 0-999 grid
    gemma     plain text, one line per text line (no boxes)

The API key is read from the environment (`api_key_env`, else OPENROUTER_API_KEY or
OPENAI_API_KEY) where the worker runs. It is never an option, so it never enters a
task payload, a config hash, the dataset or a log; error messages are scrubbed of it.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engines.base import Engine, check_reading, hashed_as_rtl_flag, line_crop, old_rtl_flag, reads_rtl, reread_element
from engines.contract import ConfigError, EngineError, TransientError
from engines.redact import error_text, public_url, url_secrets
from engines.contract import Element, PageResult

KEY_ENVS = ("OPENROUTER_API_KEY", "OPENAI_API_KEY")
CROP_PROMPT = "Transcribe the text in this image exactly as written. Output only the text."
OPENROUTER = "https://openrouter.ai/api/v1"

MAX_ERROR_CHARS = 300  # of an API's error body kept in a page's error (after redaction)
CROP_MAX_TOKENS = 128  # a line's transcription; also what a runaway answer on a crop may be billed
# The most tokens an image can become: one per 14x14 patch (ViT patches before any merging;
# Qwen merges 2x2, Gemma and tiled encoders use fewer), plus the chat template's own.
PATCH_PX, TEMPLATE_TOKENS = 14, 256


@dataclass
class VlmOptions:
    model: str = ""  # default: the family's (see each engine)
    base_url: str = OPENROUTER
    api_key_env: str = ""  # name of the variable holding the key; default OPENROUTER_API_KEY/OPENAI_API_KEY
    max_side: int = 1536  # longest side sent, px: bounds image tokens
    image_format: str = "png"  # png (lossless, best for line art) | jpeg
    max_tokens: int = 4096
    temperature: float = 0.0
    timeout: float = 120.0  # seconds per request; always set
    api_retries: int = 5  # on 429, 5xx, timeouts, connection errors (exponential backoff + jitter, Retry-After)
    max_wait: float = 60.0  # longest single wait between retries, s
    concurrency: int = 4  # requests in flight per worker
    coords: str = ""  # pixels | norm1000 | norm999; default: the family's
    logprobs: bool = False  # ask for log-probabilities to derive confidences (where the API gives them)
    prompt: str = ""  # override the family's prompt
    vlm_mode: str = "page"  # page | crops: read the lines the local detector finds, one request each (boxes for every family)
    reading: str = "auto"  # crops: the order of blocks side by side, ltr | rtl (auto: ltr, the model knows no language)

    def __post_init__(self):
        if self.image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be png or jpeg, not {self.image_format!r}")
        if self.vlm_mode not in ("page", "crops"):
            raise ValueError(f"vlm_mode must be page or crops, not {self.vlm_mode!r}")
        if self.coords not in ("", "pixels", "norm1000", "norm999"):
            raise ValueError(f"coords must be pixels, norm1000 or norm999, not {self.coords!r}")
        if self.concurrency < 1 or self.api_retries < 0 or self.timeout <= 0:
            raise ValueError("concurrency >= 1, api_retries >= 0 and timeout > 0 are required")
        check_reading(self.reading)

    @property
    def rtl(self) -> bool:
        return reads_rtl(self.reading, japanese=False)

    def hash_view(self) -> dict:
        """As `rtl` (a flag) was hashed before it became `reading`."""
        return hashed_as_rtl_flag(self)


class VlmEngine(Engine):
    """The shared client, retry policy, image preparation and answer checks."""

    Options = VlmOptions
    RENAMED = {"rtl": ("reading", old_rtl_flag)}
    max_batch_size = 32  # no model in memory: a call is cheap; concurrency does the work

    @classmethod
    def cost_entry(cls, options) -> str:
        return "api"  # a client's start-up and a page's round trip to the model

    @classmethod
    def concurrency(cls, options) -> int:
        return max(1, options.concurrency)

    @classmethod
    def model(cls, options=None) -> str | None:
        return (options.model if options is not None else None) or cls.default_model

    @classmethod
    def usage_bound(cls, options, width: int, height: int, crop: bool = False) -> tuple[int, int]:
        scale = min(1.0, options.max_side / max(1, width, height))
        w, h = max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))
        if not crop:  # the family may round the size it sends up (Qwen: to multiples of 28)
            w, h = w + 28, h + 28
        prompt = CROP_PROMPT if crop else (options.prompt or cls.prompt)
        image = math.ceil(w / PATCH_PX) * math.ceil(h / PATCH_PX)
        return image + len(prompt.encode()) + TEMPLATE_TOKENS, cls.max_tokens_for(options, crop)

    @staticmethod
    def max_tokens_for(options, crop: bool) -> int:
        return min(options.max_tokens, CROP_MAX_TOKENS) if crop else options.max_tokens
    default_coords: str = "pixels"
    prompt: str = ""

    @classmethod
    def parse_options(cls, raw):
        options = super().parse_options(raw)
        options.model = options.model or cls.default_model
        options.coords = options.coords or cls.default_coords
        if url_secrets(options.base_url):
            # The options travel in every task and name the run; a key there would reach job files,
            # logs and the dataset's engine_version.
            raise ConfigError(f"base_url={public_url(options.base_url)!r} carries credentials (user:password@ or a "
                              "key in its query): give the key in the environment instead (api_key_env=NAME, sent "
                              "as a Bearer token), never in the URL")
        return options

    @classmethod
    def check(cls, options) -> None:
        if not _api_key(options) and "127.0.0.1" not in options.base_url and "localhost" not in options.base_url:
            names = options.api_key_env or " or ".join(KEY_ENVS)
            raise ConfigError(f"no API key for {public_url(options.base_url)}: set {names} in the environment (or api_key=)")

    def __init__(self, options: VlmOptions):
        super().__init__(options)
        import openai

        self._key = _api_key(options)
        # Retries are ours (tenacity, honouring Retry-After), so the client's are off.
        self._client = openai.OpenAI(base_url=options.base_url, api_key=self._key or "none",
                                     timeout=options.timeout, max_retries=0)
        self._detector = None
        if options.vlm_mode == "crops":
            from engines.detect import TextDetector

            self._detector = TextDetector()

    def version(self) -> str:
        v = f"{self.name} {self.options.model} @ {public_url(self.options.base_url)}"
        return f"{v}; crops from {self._detector.version}" if self._detector else v

    # -- image ----------------------------------------------------------------------------
    def prepare(self, image: Image.Image, boxes: bool = True) -> tuple[bytes, str, tuple[int, int]]:
        """Downscale to max_side (the family may adjust the size where it answers with boxes),
        encode; return bytes, MIME type, size sent."""
        w, h = image.size
        scale = min(1.0, self.options.max_side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if boxes:
            size = self.sent_size(*size)
        img = image.convert("RGB") if image.mode not in ("RGB", "L") else image
        if size != img.size:
            img = img.resize(size, Image.LANCZOS)
        buf = io.BytesIO()
        if self.options.image_format == "jpeg":
            img.save(buf, "JPEG", quality=90)
            return buf.getvalue(), "image/jpeg", size
        img.save(buf, "PNG", optimize=False)
        return buf.getvalue(), "image/png", size

    def sent_size(self, w: int, h: int) -> tuple[int, int]:
        return w, h

    # -- request --------------------------------------------------------------------------
    def ask(self, image_bytes: bytes, mime: str, prompt: str | None = None, max_tokens: int | None = None):
        import openai
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        url = f"data:{mime};base64,{base64.b64encode(image_bytes).decode()}"
        messages = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": prompt or self.options.prompt or self.prompt},
        ]}]
        backoff = wait_exponential_jitter(initial=1, max=self.options.max_wait)

        def wait(state) -> float:
            after = _retry_after(state.outcome.exception())
            return min(after, self.options.max_wait) if after is not None else backoff(state)

        kwargs = {"logprobs": True} if self.options.logprobs else {}
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.options.api_retries + 1), wait=wait,
                                    retry=retry_if_exception(_is_transient), reraise=True):
                with attempt:
                    return self._client.chat.completions.create(
                        model=self.options.model, messages=messages, max_tokens=max_tokens or self.options.max_tokens,
                        temperature=self.options.temperature, **kwargs)
        except openai.APIStatusError as exc:
            status = exc.status_code
            message = self._scrub(f"{public_url(self.options.base_url)} answered HTTP {status}: {_status_text(exc)}")
            if status == 429:
                raise TransientError(f"rate limited after {self.options.api_retries} retries: {message}", kind="rate_limited") from None
            if status >= 500 or status in (408, 409):
                raise TransientError(f"server error after {self.options.api_retries} retries: {message}", kind="api_error") from None
            kind = "auth" if status in (401, 403) else "api_rejected"
            raise EngineError(message, kind=kind) from None
        except openai.APITimeoutError:
            raise TransientError(f"no answer within timeout={self.options.timeout:g} s, "
                                 f"{self.options.api_retries} retries", kind="api_timeout") from None
        except openai.APIConnectionError as exc:
            raise TransientError(self._scrub(f"cannot reach {public_url(self.options.base_url)}: {exc}"), kind="api_unreachable") from None
        except openai.APIResponseValidationError as exc:
            raise EngineError(self._scrub(f"the API's response is not valid: {exc}"), kind="bad_answer") from None
        except json.JSONDecodeError as exc:
            raise EngineError(f"the API's response is not JSON: {exc}", kind="bad_answer") from None

    def _scrub(self, text: str) -> str:
        """The key, its base64, any 8+ character piece of it and auth headers out; then cut."""
        return error_text(text, [self._key] if self._key else [], limit=MAX_ERROR_CHARS)

    def _answer(self, image: Image.Image, prompt: str | None = None):
        """Send one image; return (answer text, choice, response, size sent). Bad answers raise."""
        crop = prompt is not None  # a line's crop comes back as text only
        data, mime, sent = self.prepare(image, boxes=not crop)
        response = self.ask(data, mime, prompt, self.max_tokens_for(self.options, crop))
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise EngineError("the API returned no choices", kind="bad_answer")
        choice = choices[0]
        answer = (choice.message.content or "") if choice.message else ""
        if choice.finish_reason == "length":
            raise EngineError(f"answer cut off at max_tokens={self.max_tokens_for(self.options, crop)} "
                              "(finish_reason=length); raise max_tokens= or lower max_side=", kind="truncated")
        if not answer.strip():
            raise EngineError(f"empty answer (finish_reason={choice.finish_reason})", kind="empty_answer")
        return answer, choice, response, sent

    # -- page -----------------------------------------------------------------------------
    def read(self, image: Image.Image) -> PageResult:
        if self._detector is not None:
            return self._read_crops(image)
        answer, choice, response, sent = self._answer(image)
        lines = self.parse(answer)  # [(text, box in sent-image coords or None)]
        if lines is None:
            raise EngineError(f"cannot parse the answer as {self.name}'s format: {answer[:200]!r}", kind="bad_answer")
        conf = _confidence(choice)
        sx, sy = self._to_source(image.size, sent)
        elements = []
        for i, (text, box) in enumerate(lines):
            kw = dict(x0=None, y0=None, x1=None, y1=None)
            if box is not None:
                x0, y0, x1, y1 = box
                kw = dict(x0=min(x0, x1) * sx, y0=min(y0, y1) * sy, x1=max(x0, x1) * sx, y1=max(y0, y1) * sy)
            elements.append(Element(text=text, level="line", confidence=conf, block_id=i, line_id=i,
                                    reading_order=i, **kw))
        return PageResult(elements=elements, text="\n".join(t for t, _ in lines), usage={
            **self.counted(response, self.usage_bound(self.options, *image.size)),
            "sent_width": sent[0], "sent_height": sent[1], "model": self.options.model,
        })

    @staticmethod
    def counted(response, bound: tuple[int, int]) -> dict:
        """The tokens an answer reports, where they are believable (whole numbers from 0 to the
        request's bound), and the tokens billed: those, else the bound (usage missing, negative,
        not a number, or past what the request could cost)."""
        usage = getattr(response, "usage", None)
        reported = [getattr(usage, key, None) for key in ("prompt_tokens", "completion_tokens")]
        sane = all(type(v) is int and 0 <= v <= most for v, most in zip(reported, bound))
        prompt, completion = reported if sane else (None, None)
        billed = reported if sane else list(bound)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "billed_prompt_tokens": billed[0], "billed_completion_tokens": billed[1]}

    def _read_crops(self, image: Image.Image) -> PageResult:
        """vlm_mode=crops: the detector's lines, each read by the model; boxes from the detector."""
        from engines.layout import Box, reading_sequence

        quads = self._detector(np.asarray(image.convert("RGB")))
        boxes = [Box(*q.min(0), *q.max(0)) for q in quads]
        lines = [{"line_no": order, "block_id": block, "x0": boxes[i].x0, "y0": boxes[i].y0, "x1": boxes[i].x1,
                  "y1": boxes[i].y1, "polygon": [(float(x), float(y)) for x, y in quads[i]]}
                 for order, (block, i) in enumerate(reading_sequence(boxes, rtl=self.options.rtl))]
        return self.read_lines(image, lines)

    def read_lines(self, image: Image.Image, lines: list[dict]) -> PageResult:
        """Each line's crop sent with the transcription prompt: one small request a line."""
        elements = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "billed_prompt_tokens": 0, "billed_completion_tokens": 0,
                 "model": self.options.model}
        for line in lines:
            crop = line_crop(image, line)
            answer, choice, response, _ = self._answer(crop, CROP_PROMPT)
            for key, value in self.counted(response, self.usage_bound(self.options, *crop.size, crop=True)).items():
                # a line without believable usage leaves the page's reported total unknown
                usage[key] = None if value is None or usage[key] is None else usage[key] + value
            elements.append(reread_element(line, " ".join(answer.split()), _confidence(choice)))
        return PageResult(elements=elements, text="\n".join(e.text for e in elements), usage=usage)

    def _to_source(self, source: tuple[int, int], sent: tuple[int, int]) -> tuple[float, float]:
        grid = {"norm1000": 1000.0, "norm999": 999.0}.get(self.options.coords)
        if grid:
            return source[0] / grid, source[1] / grid
        return source[0] / sent[0], source[1] / sent[1]

    def parse(self, answer: str) -> list[tuple[str, tuple | None]] | None:
        raise NotImplementedError


class QwenEngine(VlmEngine):
    name = "qwen"
    default_model = "qwen/qwen2.5-vl-72b-instruct"
    default_coords = "pixels"
    prompt = ("Read all the text on this comic page: speech bubbles, captions, signs and sound effects. "
              "Answer with only a JSON array, one item per text line in reading order: "
              '{"bbox_2d": [x1, y1, x2, y2], "text": "the line"}, coordinates in pixels of this image.')

    def sent_size(self, w: int, h: int) -> tuple[int, int]:
        # Qwen2.5-VL's processor resizes to multiples of 28 and answers in that grid:
        # send that size, so the boxes are in the pixels we know.
        if self.options.coords != "pixels":
            return w, h
        return max(28, round(w / 28) * 28), max(28, round(h / 28) * 28)

    def parse(self, answer: str):
        items = parse_json_list(answer)
        if items is None:
            return None
        out = []
        for item in items:
            if not isinstance(item, dict):
                continue
            text = str(item.get("text") or item.get("text_content") or "").strip()
            box = item.get("bbox_2d") or item.get("bbox")
            if not text:
                continue
            ok = isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
            out.append((text, tuple(float(v) for v in box) if ok else None))
        return out


DET = re.compile(r"<\|ref\|>(.*?)<\|/ref\|>\s*<\|det\|>\s*(\[\[.*?\]\])\s*<\|/det\|>", re.S)


class DeepSeekEngine(VlmEngine):
    name = "deepseek"
    default_model = "deepseek-ai/DeepSeek-OCR"
    default_coords = "norm999"
    prompt = "<|grounding|>OCR this image."

    def parse(self, answer: str):
        found = DET.findall(answer)
        if not found:
            # Plain OCR output without grounding tags is still text, just without boxes.
            if "<|" in answer:
                return None
            return [(line.strip(), None) for line in answer.splitlines() if line.strip()]
        out = []
        for text, boxes in found:
            try:
                coords = json.loads(boxes)
            except json.JSONDecodeError:
                coords = []
            text = text.strip()
            if text and text not in ("text", "image", "title"):
                for box in coords or [None]:
                    out.append((text, tuple(float(v) for v in box) if box and len(box) == 4 else None))
            elif text and coords:
                continue  # a region label ("image", "title") without text of its own
        return out


class GemmaEngine(VlmEngine):
    name = "gemma"
    default_model = "google/gemma-3-27b-it"
    prompt = ("Transcribe all the text on this comic page in reading order: speech bubbles, captions, "
              "signs and sound effects, one text line per output line. Output only the text.")

    def parse(self, answer: str):
        text = re.sub(r"^```[a-z]*\n|\n?```$", "", answer.strip())
        return [(line.strip(), None) for line in text.splitlines() if line.strip()]


# -- helpers -------------------------------------------------------------------------------
def parse_json_list(answer: str) -> list | None:
    """A JSON array from a model's answer: fenced, with prose around it, trailing commas,
    or cut short after the last complete item. None when nothing can be recovered."""
    text = re.sub(r"```(?:json)?", "", answer).strip()
    start = text.find("[")
    if start < 0:
        obj = text.find("{")
        if obj < 0:
            return None
        text, start = "[" + text[obj:], 0
    body = text[start:]
    end = body.rfind("]")
    candidates = [body[: end + 1]] if end > 0 else []
    last_obj = body.rfind("}")
    if last_obj > 0:
        candidates.append(body[: last_obj + 1] + "]")  # cut short: keep the complete items
    for cand in candidates:
        for fixed in (cand, re.sub(r",\s*([\]}])", r"\1", cand)):
            try:
                value = json.loads(fixed)
            except json.JSONDecodeError:
                continue
            return value if isinstance(value, list) else [value]
    return None


def _api_key(options) -> str | None:
    names = [options.api_key_env] if options.api_key_env else list(KEY_ENVS)
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _is_transient(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code in (408, 409, 429))


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _status_text(exc) -> str:
    try:
        return json.dumps(exc.body) if exc.body else exc.response.text  # whole: _scrub redacts, then cuts
    except Exception:
        return str(exc)


def _confidence(choice) -> float | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    lps = [t.logprob for t in content if getattr(t, "logprob", None) is not None]
    return math.exp(sum(lps) / len(lps)) if lps else None
