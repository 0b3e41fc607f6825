"""Batched generation over ``deploy.model.Transformer``: ``prefill``, ``decode_one_token``, sampling, and a decoder
loop that runs plain or speculative rounds while rows finish independently.

State of a batch row ``b`` (``Decoder``): ``tokens[b, :L]`` are its prompt and generated tokens; the target's KV
cache holds the first ``L - 1`` of them (the newest token has been sampled but not yet fed), and the draft's cache
holds the first ``draft_len[b]``. Rows never wait for each other: each has its own ``L``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .model import KVCache, Transformer

if TYPE_CHECKING:
    from .speculative import SpecStats


@dataclass
class DraftModel:
    """A draft: a separate small ``Transformer`` with the target's vocabulary, or the target itself cut to its
    first ``n_layers`` layers plus its final norm and head (self-draft, ``model is target``)."""

    model: Transformer
    n_layers: int | None = None

    @property
    def layers(self) -> int:
        return self.n_layers or self.model.args.n_layers


# ---------------------------------------------------------------------------------------------- sampling
def logits_to_probs(logits: Tensor, temperature: float) -> Tensor:
    """``softmax(logits / temperature)`` in float32 (``temperature > 0``)."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def sample_from_probs(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One exact draw per row from (possibly unnormalised) ``probs`` ``[..., V]``.

    Exponential race: with ``E_i ~ Exp(1)`` independent, ``argmax_i p_i / E_i`` is ``i`` with probability
    ``p_i / sum(p)`` (``E_i / p_i`` is exponential with rate ``p_i``; the smallest wins). One seeded kernel, no
    normalisation or cumulative sums.
    """
    e = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / e).argmax(dim=-1)


def sample(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """Greedy (``temperature == 0``: the argmax) or a draw from ``softmax(logits / temperature)``."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    return sample_from_probs(logits_to_probs(logits, temperature), generator)


# ---------------------------------------------------------------------------------------------- forwards
def prefill(
    model: Transformer, cache: KVCache, tokens: Tensor, lengths: Tensor, *, n_layers: int | None = None
) -> Tensor:
    """Run right-padded prompts ``tokens[:, :P]`` at positions ``0..P-1``; logits ``[B, V]`` at each row's last
    real token (``lengths - 1``). Padding lands past a row's length: masked now, overwritten later."""
    B, P = tokens.shape
    positions = torch.arange(P, device=tokens.device).expand(B, P)
    return model(tokens, positions, cache, logits_index=lengths - 1, n_layers=n_layers)[:, 0]


def decode_one_token(
    model: Transformer,
    cache: KVCache,
    last: Tensor,
    positions: Tensor,
    temperature: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Feed each row's newest token ``last`` ``[B]`` at ``positions`` ``[B]``; return (next token ``[B]``, logits)."""
    logits = model(last[:, None], positions[:, None], cache)[:, 0]
    return sample(logits, temperature, generator), logits


# ---------------------------------------------------------------------------------------------- the loop
_ARANGES: dict[tuple[int, torch.device], Tensor] = {}


def _arange(n: int, device: torch.device) -> Tensor:
    """``torch.arange(n)``, built once per size and device: a decode loop needs the same few every round."""
    key = (n, device)
    a = _ARANGES.get(key)
    if a is None:
        a = _ARANGES[key] = torch.arange(n, device=device)
    return a


class Decoder:
    """Batched decoding of token prompts, plain (one target forward per token) or speculative (``draft`` given).

    ``step()`` runs one round for every unfinished row and returns the tokens each original row gained (empty
    for finished rows); ``finish(row)`` ends a row early (a stop string); ``run()`` steps until all rows finish.
    A row finishes at ``max_new_tokens`` or at a token in ``stop_ids`` (not emitted). Finished rows are dropped
    from the batch (``compact``) once they are at least half of it.
    """

    def __init__(
        self,
        target: Transformer,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        draft: DraftModel | None = None,
        gamma: int = 4,
        stop_ids: Iterable[int] = (),
        kv_cache_dtype: str = "auto",
        compact: bool = True,
        stats: SpecStats | None = None,
    ):
        from .speculative import SpecStats

        if not prompts:
            raise ValueError("prompts is empty: give at least one token list")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if draft is not None and (not isinstance(gamma, int) or gamma < 1):
            raise ValueError(f"gamma (draft tokens per round) must be an int >= 1, got {gamma!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        vocab = target.args.vocab_size
        rows_in = [torch.as_tensor(list(p), dtype=torch.long) for p in prompts]
        for i, t in enumerate(rows_in):
            if len(t) == 0:
                raise ValueError(f"prompt {i} has no tokens")
            if int(t.min()) < 0 or int(t.max()) >= vocab:
                bad = t[(t < 0) | (t >= vocab)][:5].tolist()
                raise ValueError(f"prompt {i} has token ids outside the vocabulary [0, {vocab}): {bad}")
        self.target, self.draft = target, draft
        self.temperature, self.generator = float(temperature), generator
        self.gamma = gamma if draft is not None else 0
        self.max_new = max_new_tokens
        self._stop_set = {int(t) for t in stop_ids}
        self.compact = compact
        self.stats = stats if stats is not None else SpecStats(gamma=self.gamma)
        dev = target.device
        B = len(prompts)
        plen = torch.tensor([len(p) for p in prompts], device=dev)
        P = int(plen.max())
        cap = P + max_new_tokens + 2 * self.gamma + 2
        self.tokens = torch.zeros(B, cap, dtype=torch.long, device=dev)
        for i, t in enumerate(rows_in):
            self.tokens[i, : len(t)] = t
        self.prompt_len = plen
        self.rows = torch.arange(B, device=dev)  # original row of each batch row (changes on compaction)
        self._rows_list = self.rows.tolist()
        self.done = torch.zeros(B, dtype=torch.bool, device=dev)
        self.n_rows = B
        self._emitted = [0] * B
        self._finished = [False] * B
        self.tcache = target.new_cache(B, cap, kv_cache_dtype=kv_cache_dtype)
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = prefill(target, self.tcache, self.tokens[:, :P], plen)
            first = sample(logits, self.temperature, generator)
        self.stats.prefill_s += time.perf_counter() - t0
        self.tokens[torch.arange(B, device=dev), plen] = first
        self.lengths = plen + 1
        self._pending: list[list[int]] = [[] for _ in range(B)]
        self.dcache = None
        if draft is not None:
            t0 = time.perf_counter()
            self.dcache = draft.model.new_cache(B, cap, kv_cache_dtype=kv_cache_dtype, n_layers=draft.layers)
            with torch.inference_mode():
                if draft.model is target:
                    # a self-draft's prefill is the target's first layers' prefill, bit for bit: copy it
                    self.dcache.copy_layers_from(self.tcache, draft.layers, P)
                else:
                    prefill(draft.model, self.dcache, self.tokens[:, :P], plen)
            self.draft_len = plen.clone()
            self.stats.prefill_s += time.perf_counter() - t0
        self._emit([1] * B, first[:, None].tolist())

    # ------------------------------------------------------------------------------------------- bookkeeping
    @property
    def finished(self) -> bool:
        return all(self._finished)

    def finish(self, row: int) -> None:
        """End original row ``row`` now (e.g. its text reached a stop string)."""
        self._finished[row] = True
        hit = (self.rows == row).nonzero()
        if len(hit):
            self.done[hit[0, 0]] = True

    def _emit(self, n_new: list[int], window: list[list[int]]) -> None:
        """Queue batch row ``b``'s first ``n_new[b]`` tokens of ``window[b]``: stop at a stop id or at
        ``max_new_tokens``. Plain Python on lists read back once per round (no tensor ops per row)."""
        stops = self._stop_set
        for b, (r, n) in enumerate(zip(self._rows_list, n_new, strict=True)):
            if n == 0 or self._finished[r]:
                continue
            out = []
            for t in window[b][:n]:
                if t in stops:
                    self._finished[r] = True
                    break
                out.append(t)
                self._emitted[r] += 1
                if self._emitted[r] >= self.max_new:
                    self._finished[r] = True
                    break
            self._pending[r] += out
            if self._finished[r]:
                self.done[b] = True

    def _compact(self) -> None:
        if len(self.done) == 1 or self._n_done_in_batch() * 2 < len(self.done):
            return
        keep = (~self.done).nonzero().squeeze(1)
        if len(keep) == 0:
            return
        self.tokens, self.lengths, self.rows, self.done = (
            self.tokens[keep],
            self.lengths[keep],
            self.rows[keep],
            self.done[keep],
        )
        self.prompt_len = self.prompt_len[keep]
        self._rows_list = self.rows.tolist()
        self.tcache.select_rows(keep)
        if self.dcache is not None:
            self.dcache.select_rows(keep)
            self.draft_len = self.draft_len[keep]

    def _n_done_in_batch(self) -> int:
        return sum(self._finished[r] for r in self._rows_list)

    # ------------------------------------------------------------------------------------------- rounds
    def step(self) -> list[list[int]]:
        """One round for all unfinished rows; the tokens each original row gained this round."""
        out, self._pending = self._pending, [[] for _ in range(self.n_rows)]
        if self.finished:
            return out
        if self.compact:
            self._compact()
        rows = self._rows_list
        all_active = not any(self._finished[r] for r in rows)
        L = self.lengths
        with torch.inference_mode():
            if self.draft is None:
                t0 = time.perf_counter()
                last = self.tokens.gather(1, (L - 1)[:, None])[:, 0]
                nxt, _ = decode_one_token(
                    self.target, self.tcache, last, L - 1, self.temperature, self.generator
                )
                self.stats.verify_s += time.perf_counter() - t0
                self.stats.target_forwards += 1
                self.tokens[_arange(len(rows), L.device), L] = nxt
                n_list = [0 if self._finished[r] else 1 for r in rows]
                n_new = 1 if all_active else torch.tensor(n_list, device=L.device)
                window = nxt[:, None].tolist()
            else:
                from .speculative import speculative_decode

                new, n_acc = speculative_decode(
                    self.target,
                    self.draft,
                    self.tcache,
                    self.dcache,
                    self.tokens,
                    L,
                    self.draft_len,
                    self.gamma,
                    self.temperature,
                    self.generator,
                    stats=self.stats,
                    active=None if all_active else ~self.done,
                )
                # write all gamma+1 candidates; only the first n_acc + 1 count (the rest lies past the new length)
                self.tokens.scatter_(1, L[:, None] + _arange(self.gamma + 1, L.device), new)
                # the draft cache is valid through the accepted drafts it was fed (it never saw d_gamma)
                draft_len = L + n_acc.clamp(max=self.gamma - 1)
                n_list = [
                    0 if self._finished[r] else n + 1 for r, n in zip(rows, n_acc.tolist(), strict=True)
                ]
                if all_active:
                    n_new, self.draft_len = n_acc + 1, draft_len
                else:  # finished rows stay where they are
                    active = ~self.done
                    n_new = torch.where(active, n_acc + 1, 0)
                    self.draft_len = torch.where(active, draft_len, self.draft_len)
                window = new.tolist()
        self.lengths = L + n_new
        self.stats.emitted_tokens += sum(n_list)
        self._emit(n_list, window)
        for r, toks in enumerate(self._pending):
            out[r] += toks
        self._pending = [[] for _ in range(self.n_rows)]
        return out

    def run(self) -> list[list[int]]:
        """Step until every row has finished; the generated tokens per original row."""
        result: list[list[int]] = [[] for _ in range(self.n_rows)]
        while True:
            for r, toks in enumerate(self.step()):
                result[r] += toks
            if self.finished:
                for r, toks in enumerate(self.step()):  # flush what the last round queued
                    result[r] += toks
                return result


def generate_tokens(
    target: Transformer,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    seed: int | None = None,
    draft: DraftModel | None = None,
    gamma: int = 4,
    stop_ids: Iterable[int] = (),
    kv_cache_dtype: str = "auto",
    stats: SpecStats | None = None,
) -> list[list[int]]:
    """Generate for a batch of token prompts; greedy when ``temperature == 0``. Returns new tokens per prompt."""
    gen = None
    if temperature > 0:
        gen = torch.Generator(device=target.device)
        gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    return Decoder(
        target,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        generator=gen,
        draft=draft,
        gamma=gamma,
        stop_ids=stop_ids,
        kv_cache_dtype=kv_cache_dtype,
        stats=stats,
    ).run()
