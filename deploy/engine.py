"""The policy runtime: a target model, an optional draft (or self-draft), optional weight-only quantization, behind
the project's ``ChatModel`` contract, so the patient, the verifier and the agents use it like any other client.

    >>> from deploy.engine import Engine                                       # doctest: +SKIP
    >>> eng = Engine("runs/bench-models/target", draft="runs/bench-models/draft", quant="int8")  # doctest: +SKIP
    >>> eng.generate([[{"role": "user", "content": "I have chest pain."}]], max_tokens=64)      # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from clinic_env.llm.base import Message, Usage, check_batch

# Used only when a tokenizer ships without a chat template (the same fallback as the hf: client).
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
QUANT_CHOICES = (None, "int8", "int4", "int4-g32", "int4-g64", "int4-g128")


class Engine:
    """Batched generation with speculative decoding and quantization; implements ``clinic_env.llm.ChatModel``.

    Arguments:
    - ``model``: local transformers folder of a Llama-family model (float, or quantized by ``deploy.quantize``).
    - ``draft``: folder of a smaller model with the same tokenizer (see ``python -m deploy.distill``);
      ``self_draft_layers``: draft with the target's first k layers and its head instead. At most one of them.
    - ``quant``: weight-only scheme applied at load (``None``, ``int8``, ``int4``, ``int4-g32``/``g64``/``g128``);
      the draft is quantized with the same scheme unless ``draft_quant`` says otherwise (``"none"`` keeps it float).
    - ``gamma``: draft tokens per round; ``dtype``: ``float32``, ``bfloat16`` or ``float16``;
      ``kv_cache_dtype``: ``auto``, ``bfloat16``, ``float16`` or ``fp8`` (e4m3, unit scale);
      ``max_batch``: conversations per forward (larger batches are split).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        draft: str | Path | None = None,
        self_draft_layers: int | None = None,
        quant: str | None = None,
        gamma: int = 4,
        device: str = "cpu",
        dtype: str = "float32",
        max_batch: int = 32,
        kv_cache_dtype: str = "auto",
        draft_quant: str | None = "same",
        model_name: str | None = None,
    ):
        import torch
        from transformers import AutoTokenizer

        from .generate import DraftModel
        from .model import KV_CACHE_DTYPES, load_hf_config, load_transformer, pack_linears
        from .quantize import get_scheme, quantize_model

        if not isinstance(gamma, int) or isinstance(gamma, bool) or gamma < 1:
            raise ValueError(f"gamma (draft tokens per round) must be an int >= 1, got {gamma!r}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if draft is not None and self_draft_layers is not None:
            raise ValueError("give either draft=PATH or self_draft_layers=k, not both")
        if quant is not None:
            get_scheme(quant)  # unknown scheme -> error listing the known ones
            if device != "cpu":
                raise ValueError(
                    f"quant={quant!r} uses PyTorch's CPU int8/int4 kernels; on {device!r} serve a quantized model "
                    "with vLLM (deploy/vllm.py) or drop quant"
                )
        if draft_quant not in ("same", "none", None):
            get_scheme(draft_quant)
        if kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"kv_cache_dtype must be one of {KV_CACHE_DTYPES}, got {kv_cache_dtype!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
        path = Path(model)
        load_hf_config(path)  # missing folder / config.json -> clear error
        if (path / "quantization.json").exists() and device != "cpu":
            raise ValueError(f"{path} is quantized for PyTorch's CPU kernels; load it with device='cpu'")
        self.path = path
        self.device, self.kv_cache_dtype = device, kv_cache_dtype
        self.gamma, self.max_batch = gamma, max_batch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if not getattr(self.tokenizer, "chat_template", None):
            self.tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        self.target = load_transformer(path, dtype=dtype, device=device)
        saved = getattr(self.target, "quant_scheme", None)
        if quant is not None:
            want = get_scheme(quant).name
            if saved is not None and saved != want:
                raise ValueError(
                    f"{path} is already quantized with {saved!r}; cannot apply quant={quant!r} on top"
                )
            if saved is None:
                quantize_model(self.target, want)
        self.quant = getattr(self.target, "quant_scheme", None)
        self.draft: DraftModel | None = None
        if self_draft_layers is not None:
            n = self.target.args.n_layers
            if not isinstance(self_draft_layers, int) or not 1 <= self_draft_layers < n:
                raise ValueError(
                    f"self_draft_layers must be an int in [1, {n - 1}] for this {n}-layer target, got {self_draft_layers!r}"
                )
            self.draft = DraftModel(self.target, self_draft_layers)
        elif draft is not None:
            dpath = Path(draft)
            load_hf_config(dpath)
            self._check_draft_tokenizer(dpath)
            dmodel = load_transformer(dpath, dtype=dtype, device=device)
            if dmodel.args.vocab_size != self.target.args.vocab_size:
                raise ValueError(
                    f"draft {dpath} has vocab_size {dmodel.args.vocab_size} but the target has "
                    f"{self.target.args.vocab_size}: a draft must share the target's tokenizer and vocabulary"
                )
            dq = (
                self.quant
                if draft_quant == "same"
                else (None if draft_quant in (None, "none") else draft_quant)
            )
            if dq is not None and getattr(dmodel, "quant_scheme", None) is None:
                quantize_model(dmodel, dq)
            self.draft = DraftModel(dmodel)
        if device == "cpu" and dtype == "bfloat16":  # oneDNN-packed weights: faster and row-consistent on CPU
            pack_linears(self.target)
            if self.draft is not None and self.draft.model is not self.target:
                pack_linears(self.draft.model)
        self.stop_ids = self._stop_token_ids()
        self.model_name = model_name or path.name
        self.name = f"engine:{path}"
        self.usage = Usage()
        self._counters = dict.fromkeys(
            (
                "spec_decode_num_drafts",
                "spec_decode_num_draft_tokens",
                "spec_decode_num_accepted_tokens",
                "prompt_tokens",
                "generation_tokens",
                "requests",
            ),
            0,
        )
        self._lock = threading.Lock()
        self.last_stats: Any = None  # SpecStats of the last call: alpha, mean_accepted_length, timings

    # ------------------------------------------------------------------------------------------- setup helpers
    def _check_draft_tokenizer(self, dpath: Path) -> None:
        from transformers import AutoTokenizer

        dtok = AutoTokenizer.from_pretrained(dpath, local_files_only=True)
        if dtok.get_vocab() != self.tokenizer.get_vocab():
            a, b = len(self.tokenizer), len(dtok)
            raise ValueError(
                f"draft {dpath} has a different tokenizer from the target {self.path} ({b} vs {a} tokens, or the "
                "same size with different ids): speculative decoding needs the target's tokenizer; distil a draft "
                "with python -m deploy.distill --target TARGET --out DRAFT"
            )

    def _stop_token_ids(self) -> list[int]:
        """End-of-turn ids: eos (tokenizer and config) and the special tokens other than bos/pad/unk (role markers
        such as ``<|user|>`` or ``<|im_end|>``: a reply that reaches one has ended)."""
        tok = self.tokenizer
        ids = set(tok.all_special_ids)
        ids -= {i for i in (tok.bos_token_id, tok.pad_token_id, tok.unk_token_id) if i is not None}
        eos = getattr(self.target.hf_config, "eos_token_id", None)
        ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            ids.add(tok.eos_token_id)
        return sorted(i for i in ids if i < self.target.args.vocab_size)

    def render(self, conversation: Sequence[Message]) -> str:
        """The prompt text for a conversation, ending where the assistant's reply begins."""
        return self.tokenizer.apply_chat_template(
            list(conversation), tokenize=False, add_generation_prompt=True
        )

    def _generator(self, temperature: float, seed: int | None) -> Any:
        import torch

        if temperature <= 0:
            return None
        g = torch.Generator(device=self.target.device)
        g.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        return g

    # ------------------------------------------------------------------------------------------- token level
    def generate_ids(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        ignore_eos: bool = False,
        stop: Sequence[str] | None = None,
        stats: Any = None,
    ) -> list[list[int]]:
        """New token ids per prompt (batched by ``max_batch``); the workhorse of every text method."""
        return [
            list(r) for r in self._run(prompts, max_tokens, temperature, seed, stop, ignore_eos, stats)[0]
        ]

    def _run(
        self,
        prompts: Sequence[Sequence[int]],
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str] | None,
        ignore_eos: bool = False,
        stats: Any = None,
    ) -> tuple[list[list[int]], list[str]]:
        rounds = self._rounds(prompts, max_tokens, temperature, seed, stop, ignore_eos, stats)
        while True:
            try:
                next(rounds)
            except StopIteration as done:
                return done.value

    def _rounds(
        self,
        prompts: Sequence[Sequence[int]],
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str] | None,
        ignore_eos: bool = False,
        stats: Any = None,
    ) -> Generator[tuple[list[list[int]], list[str | None]], None, tuple[list[list[int]], list[str]]]:
        """Generate batch by batch, yielding (tokens so far, stop-cut text or None) per row after every round."""
        from .generate import Decoder
        from .speculative import SpecStats

        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        stops = _check_stop(stop)
        ids: list[list[int]] = []
        texts: list[str] = []
        run_stats = SpecStats(gamma=self.gamma if self.draft else 0)
        with self._lock:
            gen = self._generator(temperature, seed)
            for start in range(0, len(prompts), self.max_batch):
                chunk = prompts[start : start + self.max_batch]
                st = SpecStats(gamma=self.gamma if self.draft else 0)
                dec = Decoder(
                    self.target,
                    chunk,
                    max_new_tokens=max_tokens,
                    temperature=temperature,
                    generator=gen,
                    draft=self.draft,
                    gamma=self.gamma,
                    stop_ids=() if ignore_eos else self.stop_ids,
                    kv_cache_dtype=self.kv_cache_dtype,
                    stats=st,
                )
                got: list[list[int]] = [[] for _ in chunk]
                cut: list[str | None] = [None] * len(chunk)
                while True:
                    last = dec.finished  # after the final round, one more step() hands over its queued tokens
                    for r, toks in enumerate(dec.step()):
                        if not toks or cut[r] is not None:
                            continue
                        got[r] += toks
                        if stops:
                            text = self.tokenizer.decode(got[r], skip_special_tokens=True)
                            hit = _find_stop(text, stops)
                            if hit is not None:
                                cut[r] = text[:hit]
                                dec.finish(r)
                    yield got, cut
                    if last:
                        break
                for r, toks in enumerate(got):
                    text = (
                        cut[r]
                        if cut[r] is not None
                        else self.tokenizer.decode(toks, skip_special_tokens=True)
                    )
                    ids.append(toks)
                    texts.append(text)
                self._account(chunk, got, st)
                _merge_stats(run_stats, st)
                if stats is not None:
                    _merge_stats(stats, st)
            self.last_stats = run_stats
        return ids, texts

    def _account(self, prompts: Sequence[Sequence[int]], got: list[list[int]], st: Any) -> None:
        n_prompt = sum(len(p) for p in prompts)
        n_gen = sum(len(g) for g in got)
        c = self._counters
        c["requests"] += len(prompts)
        c["prompt_tokens"] += n_prompt
        c["generation_tokens"] += n_gen
        c["spec_decode_num_drafts"] += st.rounds
        c["spec_decode_num_draft_tokens"] += st.draft_tokens
        c["spec_decode_num_accepted_tokens"] += st.accepted_tokens
        self.usage.record(requests=len(prompts), prompt_tokens=n_prompt, completion_tokens=n_gen)

    def _encode_chat(self, batch: Sequence[Sequence[Message]]) -> list[list[int]]:
        check_batch(batch)
        return [self.tokenizer(self.render(c), add_special_tokens=False)["input_ids"] for c in batch]

    # ------------------------------------------------------------------------------------------- ChatModel
    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> list[str]:
        """One reply per conversation, in order (``temperature == 0`` is greedy; ``seed`` makes sampling repeatable
        for the same batch). Replies end at an end-of-turn token, ``max_tokens``, or before a ``stop`` string."""
        if len(batch) == 0:
            return []
        return [
            t.strip() for t in self._run(self._encode_chat(batch), max_tokens, temperature, seed, stop)[1]
        ]

    def complete(
        self,
        prompts: list[str],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> list[str]:
        """Raw-text continuations (``/v1/completions``): prompts are tokenized as given, no chat template."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a list of strings")
        if not prompts:
            return []
        ids = [self.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        empty = [i for i, x in enumerate(ids) if not x]
        if empty:
            raise ValueError(f"prompts {empty} tokenize to nothing; give at least one character")
        return self._run(ids, max_tokens, temperature, seed, stop)[1]

    def stream(
        self,
        conversation: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """Text deltas of one reply as rounds finish; their concatenation equals ``generate``'s reply (unstripped
        on the left only if the model starts with spaces). Text that could still turn into a stop string, or an
        incomplete multi-byte character, is held back until it is known."""
        prompt = self._encode_chat([conversation])
        hold = max((len(s) for s in _check_stop(stop)), default=1) - 1
        sent = 0
        rounds = self._rounds(prompt, max_tokens, temperature, seed, stop)
        try:
            while True:
                try:
                    got, cut = next(rounds)
                except StopIteration as done:
                    text = done.value[1][0]
                    if len(text) > sent:
                        yield text[sent:]
                    return
                text = (
                    cut[0] if cut[0] is not None else self.tokenizer.decode(got[0], skip_special_tokens=True)
                )
                safe = len(text) if cut[0] is not None else len(text) - hold
                while safe > sent and text[safe - 1] == "\ufffd":  # an incomplete multi-byte character
                    safe -= 1
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
        finally:
            rounds.close()  # a consumer that stops early releases the engine

    def stats(self) -> dict[str, int]:
        """Cumulative counters with vLLM's names (spec_decode_num_* count row-rounds and draft tokens)."""
        return dict(self._counters)


def _check_stop(stop: Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if not all(isinstance(s, str) for s in stop):
        raise TypeError(f"stop must be a list of strings, got {stop!r}")
    return [s for s in stop if s]


def _find_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _merge_stats(into: Any, st: Any) -> None:
    for k, v in vars(st).items():
        if k != "gamma" and isinstance(v, (int, float)):
            setattr(into, k, getattr(into, k) + v)
    into.gamma = st.gamma
