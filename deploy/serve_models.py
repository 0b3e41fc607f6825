"""What the OpenAI-compatible server needs from a model, and an adapter that gives it to any ``ChatModel``.

The server (``deploy/server.py``) talks to a :class:`ServedModel`: batched chat ``generate``, batched raw-prompt
``complete``, a token ``stream`` for one conversation, ``stats`` (engine counters) and ``model_name``.
``deploy.engine.Engine`` implements all of it. Anything else that implements ``clinic_env.llm.base.ChatModel``
(``TransformersChatModel``, ``CallableChatModel``, ``OpenAIChatModel``...) is wrapped by :class:`ChatModelAdapter`:

- ``complete`` on a transformers model tokenizes the raw prompt (no chat template); on any other model the prompt
  is sent as one user message (said in ``ChatModelAdapter.complete``'s docstring).
- ``stream`` on a transformers model streams tokens with transformers' ``TextIteratorStreamer``; on any other
  model it yields the whole reply as one piece (no incremental streaming).
- ``stats`` reads the model's ``Usage``; models without speculative decoding report zero drafts.

Optional extras the server uses when a model has them: ``tokenizer`` (to count tokens for ``usage``), ``render``
(the prompt text of a conversation) and ``last_token_counts`` (exact ``(prompt, completion)`` token counts of each
request of the latest call; the adapter keeps them for transformers models, so ``usage`` and ``finish_reason`` are
exact there; otherwise replies are re-tokenized).

Every method here runs on the server's single model worker thread, never on the event loop.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from clinic_env.llm.base import Message, check_batch

SPEC_KEYS = ("spec_decode_num_drafts", "spec_decode_num_draft_tokens", "spec_decode_num_accepted_tokens")
STAT_KEYS = ("requests", "prompt_tokens", "generation_tokens", *SPEC_KEYS)


@runtime_checkable
class ServedModel(Protocol):
    """The model side of the server. ``deploy.engine.Engine`` implements it; :func:`as_served` wraps the rest."""

    model_name: str

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """One reply per conversation, in order."""
        ...

    def complete(
        self,
        prompts: list[str],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """One continuation per raw prompt (no chat template), in order."""
        ...

    def stream(
        self,
        conversation: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """The reply to one conversation, piece by piece."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters since the model was built: the keys of ``STAT_KEYS`` (missing ones read as 0)."""
        ...


def _accepts_stop(fn: Any) -> bool:
    """Whether ``fn`` takes a ``stop`` keyword (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "stop" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class _CancelOnEvent:
    """A transformers stopping criterion that ends generation when ``event`` is set (the client went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class ChatModelAdapter:
    """Gives any ``ChatModel`` the :class:`ServedModel` methods it lacks (see the module docstring)."""

    def __init__(self, model: Any, *, model_name: str | None = None):
        if not callable(getattr(model, "generate", None)):
            raise TypeError(f"{type(model).__name__} has no generate(); the server needs a ChatModel")
        self.model = model
        name = model_name or getattr(model, "model_name", None) or getattr(model, "name", None)
        self.model_name = str(name or type(model).__name__)
        self._generate_takes_stop = _accepts_stop(model.generate)
        # (prompt, completion) tokens of each request of the latest call, when known exactly (transformers)
        self.last_token_counts: list[tuple[int, int]] | None = None
        # A transformers-backed model (TransformersChatModel): raw completion and real streaming are possible.
        self._hf = all(hasattr(model, a) for a in ("tokenizer", "model", "device", "usage")) and hasattr(
            getattr(model, "model", None), "generate"
        )

    @property
    def tokenizer(self) -> Any:
        """The wrapped model's tokenizer, if it has one (the server uses it to count tokens for ``usage``)."""
        return getattr(self.model, "tokenizer", None)

    def render(self, conversation: Sequence[Message]) -> str | None:
        """The prompt text the wrapped model sees for ``conversation``, when it can say."""
        render = getattr(self.model, "render", None)
        return render(conversation) if callable(render) else None

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """The wrapped ``generate``; ``stop`` is passed on only when it accepts one (the server trims anyway).
        A transformers model generates here instead, the same way, so that exact token counts are known."""
        if self._hf:
            check_batch(batch)
            prompts = [self.model.render(conv) for conv in batch]
            return self._hf_texts(
                prompts, max_tokens=max_tokens, temperature=temperature, seed=seed, chat=True
            )
        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        if stop and self._generate_takes_stop:
            kwargs["stop"] = list(stop)
        return self.model.generate(batch, **kwargs)

    def complete(
        self,
        prompts: list[str],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Raw-prompt continuations. A transformers model continues the prompt text itself; any other
        ``ChatModel`` has no raw-prompt mode, so each prompt is sent as a single user message."""
        own = getattr(self.model, "complete", None)
        if callable(own):
            return own(prompts, max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stop)
        if self._hf:
            if not prompts or not all(isinstance(p, str) and p for p in prompts):
                raise ValueError("prompts must be a non-empty list of non-empty strings")
            return self._hf_texts(
                prompts, max_tokens=max_tokens, temperature=temperature, seed=seed, chat=False
            )
        batch = [[Message(role="user", content=p)] for p in prompts]
        return self.generate(batch, max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stop)

    def stream(
        self,
        conversation: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Token pieces from a transformers model; one piece (the whole reply) from any other model."""
        own = getattr(self.model, "stream", None)
        if callable(own):
            yield from own(conversation, max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stop)
            return
        if self._hf:
            yield from self._hf_stream(
                conversation, max_tokens=max_tokens, temperature=temperature, seed=seed
            )
            return
        (text,) = self.generate(
            [conversation], max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stop
        )
        if text:
            yield text

    def stats(self) -> dict[str, int]:
        """Counters from the wrapped model's ``stats()`` or ``Usage``; no speculation here, so drafts are 0."""
        own = getattr(self.model, "stats", None)
        if callable(own):
            return {k: int(v) for k, v in own().items()}
        usage = getattr(self.model, "usage", None)
        out = dict.fromkeys(STAT_KEYS, 0)
        if usage is not None:
            out.update(
                requests=int(usage.requests),
                prompt_tokens=int(usage.prompt_tokens),
                generation_tokens=int(usage.completion_tokens),
            )
        return out

    # --- transformers-only paths -------------------------------------------------------------------------

    def _hf_inputs(self, prompts: list[str], *, add_special_tokens: bool) -> Any:
        tok = self.model.tokenizer
        return tok(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens).to(
            self.model.device
        )

    def _hf_sampling(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "pad_token_id": self.model.tokenizer.pad_token_id,
            "do_sample": temperature > 0,
        }
        if temperature > 0:  # the same sampling settings as TransformersChatModel.generate
            kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
        return kwargs

    def _hf_run(self, enc: Any, kwargs: dict[str, Any], seed: int | None) -> Any:
        """``model.generate`` under the seed, in forked RNG state like ``TransformersChatModel``."""
        import torch

        device = str(self.model.device)
        devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            return self.model.model.generate(**enc, **kwargs)

    def _hf_texts(
        self, prompts: list[str], *, max_tokens: int, temperature: float, seed: int | None, chat: bool
    ) -> list[str]:
        """Batched generation over rendered chat prompts (``chat``: stripped replies, as
        ``TransformersChatModel.generate`` gives) or raw prompts (continuations kept verbatim), recording exact
        per-request token counts in ``last_token_counts``."""
        tok = self.model.tokenizer
        enc = self._hf_inputs(prompts, add_special_tokens=not chat)
        out = self._hf_run(enc, self._hf_sampling(max_tokens, temperature), seed)
        texts, counts = [], []
        for row, n_prompt in zip(
            out[:, enc["input_ids"].shape[1] :].tolist(), enc["attention_mask"].sum(1).tolist(), strict=True
        ):
            if tok.eos_token_id is not None and tok.eos_token_id in row:
                row = row[: row.index(tok.eos_token_id)]
            row = [t for t in row if t != tok.pad_token_id]
            counts.append((int(n_prompt), len(row)))
            text = tok.decode(row, skip_special_tokens=True)
            texts.append(text.strip() if chat else text)
        self.last_token_counts = counts
        self.model.usage.record(
            requests=len(prompts),
            prompt_tokens=sum(c[0] for c in counts),
            completion_tokens=sum(c[1] for c in counts),
        )
        return texts

    def _hf_stream(
        self, conversation: Sequence[Message], *, max_tokens: int, temperature: float, seed: int | None
    ) -> Iterator[str]:
        """transformers' TextIteratorStreamer: ``generate`` runs in a helper thread and hands text over as it
        decodes. The pieces are stripped like ``TransformersChatModel.generate`` strips its reply (leading
        whitespace dropped, trailing whitespace held back until more text follows), so the concatenation equals
        the non-streamed reply. Closing the iterator early stops generation at the next token."""
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        check_batch([conversation])
        tok = self.model.tokenizer
        enc = self._hf_inputs([self.model.render(conversation)], add_special_tokens=False)
        kwargs = self._hf_sampling(max_tokens, temperature)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        cancel = threading.Event()
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["out"] = self._hf_run(
                    enc,
                    {
                        **kwargs,
                        "streamer": streamer,
                        "stopping_criteria": StoppingCriteriaList([_CancelOnEvent(cancel)]),
                    },
                    seed,
                )
            except BaseException as exc:  # re-raised in the consuming thread below
                result["error"] = exc
                streamer.end()

        worker = threading.Thread(target=work, name="hf-stream", daemon=True)
        worker.start()
        pending, started = "", False
        try:
            for piece in streamer:
                if not started:
                    piece = piece.lstrip()
                    if not piece:
                        continue
                    started = True
                text = pending + piece
                kept = text.rstrip()
                pending = text[len(kept) :]
                if kept:
                    yield kept
        finally:
            cancel.set()
            worker.join()
        if "error" in result:
            raise result["error"]
        new = result["out"][0, enc["input_ids"].shape[1] :].tolist()
        if tok.eos_token_id is not None and tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        counts = [(int(enc["attention_mask"].sum()), len([t for t in new if t != tok.pad_token_id]))]
        self.last_token_counts = counts
        self.model.usage.record(requests=1, prompt_tokens=counts[0][0], completion_tokens=counts[0][1])


def as_served(model: Any, *, model_name: str | None = None) -> ServedModel:
    """``model`` itself when it already is a :class:`ServedModel`, else a :class:`ChatModelAdapter` over it."""
    if isinstance(model, ServedModel) and model_name is None:
        return model
    return ChatModelAdapter(model, model_name=model_name)  # type: ignore[return-value]


def trim_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopFilter:
    """Applies stop strings to streamed pieces: text that could be the start of a stop string is held back
    until the next piece shows whether it is (OpenAI semantics: the stop string itself is never sent)."""

    def __init__(self, stop: Sequence[str]):
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that is safe to send now."""
        if self.stopped:
            return ""
        if not self.stop:
            return piece
        self.buffer += piece
        kept, found = trim_at_stop(self.buffer, self.stop)
        if found:
            self.stopped = True
            self.buffer = ""
            return kept
        safe = len(self.buffer) - self.hold
        if safe <= 0:
            return ""
        out, self.buffer = self.buffer[:safe], self.buffer[safe:]
        return out

    def flush(self) -> str:
        """What is left once the model has finished."""
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out
