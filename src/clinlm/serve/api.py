"""The OpenAI-compatible API and the web page, in one FastAPI app.

    app = create_app("qs/model", api_key="secret")        # or an already loaded model
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes: POST /v1/chat/completions (content parts text / input_audio / image_url, stream=true as
server-sent events), GET /v1/models, GET /health, and the page at / (static/). Errors use
OpenAI's {"error": {"message", "type", "param", "code"}} body with a 4xx status. The body is
read in chunks and refused (413) past the limit before it is parsed. Logs hold request counts and
timings only: never keys, text or media.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from clinlm.models.language_model import AUDIO_TOKEN
from clinlm.serve.batching import Batcher
from clinlm.serve.media import Limits, MediaError, decode_audio, decode_image_url
from clinlm.serve.memory_features import new_key

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("clinlm.serve")
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error", 415: "invalid_request_error"}


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"), "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _has_vision(model: Any) -> bool:
    return getattr(model, "vision_tower", None) is not None


def build_row(messages: Any, model: Any, limits: Limits, media_dir: Path | None = None) -> tuple[dict[str, Any], dict]:
    """OpenAI messages -> (bench row with "mem:" audio keys, {key: (waveform, sr)})."""
    if not isinstance(messages, list) or not messages:
        raise MediaError("'messages' must be a non-empty list", param="messages")
    out, audios, waves, n_media, chars = [], [], {}, 0, 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise MediaError(f"messages[{i}] needs a role of system, user or assistant", param=f"messages[{i}].role")
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise MediaError(f"messages[{i}].content must be a string or a list of content parts", param=f"messages[{i}].content")
        texts, keys = [], []
        # Placeholders the caller wrote in the text; when there are none, one goes where each audio part stands.
        explicit = sum(p["text"].count(AUDIO_TOKEN) for p in parts if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
        for j, p in enumerate(parts):
            where = f"messages[{i}].content[{j}]"
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text":
                if not isinstance(p.get("text"), str):
                    raise MediaError(f"{where}.text must be a string", param=f"{where}.text")
                texts.append(p["text"])
            elif kind == "input_audio":
                n_media += 1
                if n_media > limits.max_media:
                    raise MediaError(f"more than {limits.max_media} media in one request; send fewer recordings", param=where, code="too_many_media")
                if m["role"] != "user":
                    raise MediaError(f"{where}: audio belongs in user messages", param=where)
                if model.audio_tower is None:
                    raise MediaError("this checkpoint is a text-only model: it cannot take audio", param=where, code="unsupported_media")
                spec = p.get("input_audio")
                if not isinstance(spec, dict):
                    raise MediaError(f"{where}.input_audio must be an object {{data, format}}", param=f"{where}.input_audio")
                x, sr, raw = decode_audio(spec.get("data"), spec.get("format"), limits, param=f"{where}.input_audio")
                key = new_key()
                waves[key] = (x, sr)
                keys.append(key)
                if media_dir is not None:  # only when the operator asked for uploads to be kept
                    media_dir.mkdir(parents=True, exist_ok=True)
                    (media_dir / f"{key[4:]}.{(spec.get('format') or 'wav').lower()}").write_bytes(raw)
                if not explicit:
                    texts.append(AUDIO_TOKEN)  # placeholder where the part stands
            elif kind == "image_url":
                n_media += 1
                if n_media > limits.max_media:
                    raise MediaError(f"more than {limits.max_media} media in one request; send fewer", param=where, code="too_many_media")
                spec = p.get("image_url")
                decode_image_url(spec.get("url") if isinstance(spec, dict) else spec, limits, param=f"{where}.image_url")
                if not _has_vision(model):
                    raise MediaError("this checkpoint has no vision tower: it cannot take images (send audio or text)", param=where, code="unsupported_media")
            else:
                raise MediaError(f"{where}: content part type {kind!r} is not supported; use text, input_audio or image_url", param=f"{where}.type")
        text = ""
        for t in texts:  # "<audio>\nquestion", the bench's layout
            text += t if t == AUDIO_TOKEN else ("\n" if text.endswith(AUDIO_TOKEN) else " " if text else "") + t
        text = text.strip()
        if explicit and explicit != len(keys):
            raise MediaError(
                f"messages[{i}] has {explicit} {AUDIO_TOKEN} placeholder(s) but {len(keys)} audio part(s); "
                f"write one {AUDIO_TOKEN} per recording, or none and let the server place them",
                param=f"messages[{i}].content", code="placeholder_mismatch",
            )
        if m["role"] != "user" and AUDIO_TOKEN in text:
            raise MediaError(f"messages[{i}]: {AUDIO_TOKEN} placeholders belong in user messages", param=f"messages[{i}].content", code="placeholder_mismatch")
        chars += len(text)
        audios += keys
        out.append({"role": m["role"], "content": text})
    if out[-1]["role"] != "user":
        raise MediaError("the last message must come from the user", param="messages")
    if chars > limits.max_prompt_chars:
        raise MediaError(f"the conversation is {chars} characters; the limit is {limits.max_prompt_chars}", param="messages", code="context_length_exceeded")
    return {"messages": out, "audios": audios, "record_ids": ["request"]}, waves


def _sampling(body: dict, limits: Limits) -> tuple[int, float]:
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = limits.max_tokens if max_tokens is None else max_tokens
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= limits.max_tokens:
        raise MediaError(f"max_tokens must be an integer from 1 to {limits.max_tokens}", param="max_tokens")
    temperature = body.get("temperature", 0.0)
    temperature = 0.0 if temperature is None else temperature
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
        raise MediaError("temperature must be a number from 0 to 2", param="temperature")
    if body.get("n", 1) not in (1, None):
        raise MediaError("only n=1 is supported", param="n")
    return max_tokens, float(temperature)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise MediaError(f"request body is {declared} bytes; the limit is {limit}", status=413, code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():  # also bounds bodies sent without a Content-Length
        size += len(chunk)
        if size > limit:
            raise MediaError(f"request body exceeds {limit} bytes", status=413, code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(checkpoint_or_model: Any, api_key: str | None = None, limits: Limits = Limits(), media_dir: str | Path | None = None,
               model_name: str | None = None, window_ms: float = 5.0, max_batch: int = 8) -> FastAPI:
    folder = None  # the checkpoint folder, when served from one (a radiology checkpoint's retrieval index lives there)
    if isinstance(checkpoint_or_model, (str, Path)):
        import clinlm

        folder = Path(checkpoint_or_model)
        model = clinlm.load(folder)
        name = model_name or folder.resolve().name
    else:
        model, name = checkpoint_or_model, model_name or "clinlm"
    media_dir = Path(media_dir) if media_dir else None
    batcher = Batcher(model, window_ms=window_ms, max_batch=max_batch)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="clinlm", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher, app.state.model, app.state.limits = batcher, model, limits

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return error(400, "invalid request")

    @app.exception_handler(MediaError)
    async def _media(_: Request, exc: MediaError):
        return error(exc.status, str(exc), exc.param, exc.code)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception):
        log.error("request failed: %s", type(exc).__name__)  # the type only: messages may quote content
        return error(500, f"the model failed on this request ({type(exc).__name__}); the server keeps running", code="internal_error")

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        got = request.headers.get("authorization", "")
        token = got[7:] if got.lower().startswith("bearer ") else ""
        if not token:
            raise MediaError("missing API key: send 'Authorization: Bearer <key>'", status=401, code="missing_api_key")
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise MediaError("incorrect API key", status=401, code="invalid_api_key")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": name, "audio": model.audio_tower is not None, "vision": _has_vision(model), "auth": api_key is not None,
                "max_tokens": limits.max_tokens, "max_audio_seconds": limits.max_audio_seconds, "max_media": limits.max_media}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "clinlm"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        check_key(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise MediaError(f"Content-Type must be application/json, not {ctype or 'none'!r}", status=415, code="unsupported_content_type")
        raw = await _read_body(request, limits.max_body_bytes)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MediaError(f"request body is not valid JSON ({exc.__class__.__name__})", code="invalid_json") from exc
        if not isinstance(body, dict):
            raise MediaError("request body must be a JSON object")
        max_tokens, temperature = _sampling(body, limits)
        # decoding and resampling uploads is CPU work: off the event loop, so other requests keep flowing
        row, waves = await asyncio.to_thread(build_row, body.get("messages"), model, limits, media_dir)
        impression = folder is not None and not waves and "FINDINGS:" in row["messages"][-1]["content"]
        if impression:  # findings -> impression: prompt with the similar reports, as `clinlm ask` and the bench do
            from clinlm.bench.impression import augment_question

            row["messages"][-1]["content"] = augment_question(folder, row["messages"][-1]["content"])
        t0 = time.perf_counter()
        answer = await batcher.submit(row, waves, max_tokens, temperature)
        if impression and temperature == 0:  # greedy: the checkpoint's reranker chooses, as in `clinlm ask`
            from clinlm.evaluate.impression_rerank import rerank

            chosen = await asyncio.to_thread(rerank, folder, [row], [answer], 16, model)
            answer = chosen[0] if chosen else answer
        log.info("answered %d message(s), %d audio(s) in %.3f s", len(row["messages"]), len(waves), time.perf_counter() - t0)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        n_out = len(model.tokenizer(answer, add_special_tokens=False)["input_ids"])
        finish = "length" if n_out >= max_tokens else "stop"
        if not body.get("stream"):
            n_in = sum(len(model.tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in row["messages"])
            return {
                "id": rid, "object": "chat.completion", "created": now, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}],
                "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
            }

        def chunk(delta: dict, finish_reason: str | None = None) -> str:
            c = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": name,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            return f"data: {json.dumps(c)}\n\n"

        async def events():
            # generate() returns whole answers, so the stream carries the answer word by word
            # once it is ready (same wire format as token streaming).
            yield chunk({"role": "assistant", "content": ""})
            words = answer.split(" ")
            for k, w in enumerate(words):
                yield chunk({"content": w if k == 0 else " " + w})
            yield chunk({}, finish)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
