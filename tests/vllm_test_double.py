"""A test double of the vLLM and SGLang HTTP APIs: the request and answer shapes topreward's `openai` backend uses.

Not a server to run models with: a standard-library HTTP server on loopback that answers
  * vLLM `/v1/chat/completions` (`logprobs`, `logprob_token_ids`, `return_tokens_as_token_ids`,
    `add_generation_prompt`, `continue_final_message`, image parts with `uuid`) and `/tokenize`;
  * SGLang `/generate` (`text`, `image_data`, `return_logprob`, `token_ids_logprob`) and `/v1/tokenize`,
with real log-probs: it renders the messages with the tiny model's chat template, runs one plain forward of
the in-process `HFBackend`'s model over the text and the decoded images, and returns the asked ids'
log-probs in the documented answer shapes. Knobs make it misbehave the ways a real server can: HTTP 500s,
garbage bodies, slowness, and an older vLLM/SGLang that ignores the per-token-id field.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch

QWEN_IMAGE_MARKER = "<|vision_start|><|image_pad|><|vision_end|>"


def decode_data_url(url: str) -> np.ndarray:
    from PIL import Image

    head, _, data = url.partition(",")
    if not head.startswith("data:image/") or ";base64" not in head:
        raise ValueError(f"not a base64 image data URL: {url[:40]!r}")
    return np.array(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServerTestDouble:
    """The double: `start()` -> base URL; `calls` records (path, body, headers) of every request."""

    def __init__(self, backend: Any, model_name: str) -> None:
        self.backend, self.model_name = backend, model_name
        self.calls: list[tuple[str, dict, dict]] = []
        self.fail_next = 0  # answer HTTP 500 to this many requests
        self.garbage_next = 0  # answer 200 with a non-JSON body to this many requests
        self.delay = 0.0  # seconds before answering
        self.honour_token_ids = (
            True  # False: an older server that ignores logprob_token_ids / token_ids_logprob
        )
        self.chat_reply = "the robot grasps the pen. DONE and more"
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> str:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                double.calls.append((self.path, body, dict(self.headers)))
                if double.delay:
                    time.sleep(double.delay)
                if double.fail_next > 0:
                    double.fail_next -= 1
                    return self._send(500, {"error": {"message": "internal error", "code": 500}})
                if double.garbage_next > 0:
                    double.garbage_next -= 1
                    return self._send(200, b"<html>502 upstream</html>")
                try:
                    return self._send(200, double.answer(self.path, body))
                except _Reject as e:
                    return self._send(e.status, {"error": {"message": str(e), "code": e.status}})

            def _send(self, status: int, payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # ---- answers ------------------------------------------------------------------------------------
    def answer(self, path: str, body: dict) -> dict:
        if path in ("/tokenize", "/v1/tokenize"):
            ids = self.backend.tokenize(body["prompt"])
            return {"count": len(ids), "max_model_len": 32768, "tokens": ids}
        if path == "/v1/chat/completions":
            return self.chat_completion(body)
        if path == "/generate":
            return self.sglang_generate(body)
        raise _Reject(404, f"no route {path}")

    def log_probs(self, text: str, images: list[np.ndarray]) -> torch.Tensor:
        """Next-token log-probs after `text` with `images` (one plain forward, float32 log-softmax)."""
        b = self.backend
        with self._lock, torch.inference_mode():
            kwargs = {"images": images} if images else {}
            inputs = b.processor(text=[text], return_tensors="pt", **kwargs)
            logits = b.model(**b.to_device(inputs)).logits[0, -1].float()
            return torch.log_softmax(logits, dim=-1)

    def _check_ids(self, ids: list[int], vocab: int) -> None:
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise _Reject(400, f"token id(s) {bad} out of vocabulary range [0, {vocab})")

    def chat_completion(self, body: dict) -> dict:
        if body.get("model") != self.model_name:
            raise _Reject(404, f"The model `{body.get('model')}` does not exist.")
        *system, message = body["messages"]  # an optional system message, then the user turn
        images, template_content = [], []
        for part in message["content"]:
            if part["type"] == "image_url":
                url = part["image_url"]["url"]
                images.append(decode_data_url(url) if url.startswith("data:") else url)
                template_content.append({"type": "image"})
            else:
                template_content.append({"type": "text", "text": part["text"]})
        add_gen, cont = body.get("add_generation_prompt", True), body.get("continue_final_message", False)
        if add_gen and cont:
            raise _Reject(
                400, "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
            )
        text = self.backend.processor.apply_chat_template(
            [*system, {"role": "user", "content": template_content}],
            add_generation_prompt=add_gen,
            continue_final_message=cont,
            tokenize=False,
        )
        if not body.get("logprobs"):
            return self._chat_answer(self.chat_reply, None)
        if any(isinstance(im, str) for im in images):
            raise _Reject(400, "the test double fetches no URLs; send images as data URLs")
        lp = self.log_probs(text, images)
        sampled = int(lp.argmax())
        as_ids = body.get("return_tokens_as_token_ids")
        name = (
            (lambda t: f"token_id:{t}")
            if as_ids
            else (lambda t: self.backend.processor.tokenizer.decode([t]))
        )
        ids = list(body.get("logprob_token_ids") or []) if self.honour_token_ids else []
        self._check_ids(ids, lp.shape[0])
        top = [sampled, *[t for t in ids if t != sampled]] if ids else []
        content = {
            "token": name(sampled),
            "logprob": max(float(lp[sampled]), -9999.0),
            "bytes": list(name(sampled).encode()),
            "top_logprobs": [{"token": name(t), "logprob": max(float(lp[t]), -9999.0)} for t in top],
        }
        return self._chat_answer(self.backend.processor.tokenizer.decode([sampled]), {"content": [content]})

    def _chat_answer(self, text: str, logprobs: dict | None) -> dict:
        return {
            "id": "chatcmpl-double",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": logprobs,
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
        }

    def sglang_generate(self, body: dict) -> dict:
        text, urls = body["text"], body.get("image_data") or []
        if text.count(QWEN_IMAGE_MARKER) != len(urls):
            raise _Reject(400, f"{len(urls)} images but {text.count(QWEN_IMAGE_MARKER)} image tokens in text")
        lp = self.log_probs(text, [decode_data_url(u) for u in urls])
        sampled = int(lp.argmax())
        meta: dict[str, Any] = {
            "id": "double",
            "finish_reason": {"type": "length", "length": 1},
            "prompt_tokens": 0,
            "completion_tokens": 1,
            "cached_tokens": 0,
        }
        if body.get("return_logprob"):
            meta["output_token_logprobs"] = [[float(lp[sampled]), sampled, None]]
            if self.honour_token_ids and body.get("token_ids_logprob"):
                ids = list(body["token_ids_logprob"])
                self._check_ids(ids, lp.shape[0])
                meta["output_token_ids_logprobs"] = [[[float(lp[t]), t, None] for t in ids]]
        return {
            "text": self.backend.processor.tokenizer.decode([sampled]),
            "output_ids": [sampled],
            "meta_info": meta,
        }
