"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023), batched, with per-row acceptance.

One round for row ``b`` whose newest token ``x`` sits at position ``L - 1``:

1. The draft proposes ``d_1..d_gamma`` autoregressively, ``d_i ~ q_i = q(. | prefix, d_<i)``.
2. The target scores ``[x, d_1, .., d_gamma]`` in one forward: ``p_1..p_{gamma+1}``, where ``p_i`` is the target's
   distribution for the token at position ``L - 1 + i``.
3. Accept ``d_i`` with probability ``min(1, p_i(d_i) / q_i(d_i))``, left to right, until the first rejection.
   At a rejection at ``i``, emit one token from the residual ``norm(max(0, p_i - q_i))`` and stop; if all
   ``gamma`` are accepted, emit a bonus token from ``p_{gamma+1}``. Each round emits ``n + 1`` tokens (``n``
   accepted, ``0 <= n <= gamma``).

Why this is exact: for any token ``t``, ``P(emit t at i) = q(t) min(1, p(t)/q(t)) + P(reject) * r(t)`` where
``P(reject) = sum_t max(0, q(t) - p(t)) = sum_t max(0, p(t) - q(t))`` and ``r = max(0, p - q) / that sum``;
so ``P(emit t) = min(q(t), p(t)) + max(0, p(t) - q(t)) = p(t)``. Greedy decoding is the limit where ``p`` and
``q`` are one-hot: a draft token is accepted iff it equals the target's argmax, and the residual is the
target's argmax, so the output is the target's own greedy output, token for token.

Rollback: the target cache then holds ``x, d_1..d_gamma`` at positions ``L-1..L-1+gamma``; only the first
``n + 1`` stay valid, which is just the row's new length ``L + n + 1`` (the rest is masked and overwritten).

Expected tokens per round with i.i.d. acceptance ``alpha``: ``(1 - alpha^(gamma+1)) / (1 - alpha)``; with a
draft step costing ``c`` target steps, the speedup is that over ``gamma c + 1`` (``theoretical_speedup``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .generate import DraftModel, _arange, logits_to_probs, sample_from_probs
from .model import KVCache, Transformer, attention_length


@dataclass
class SpecStats:
    """Counters of one or more runs (all rows together). ``rounds`` counts row-rounds (vLLM's num_drafts)."""

    gamma: int = 0
    rounds: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    rejections: int = 0  # row-rounds that ended on a rejected draft token (not all gamma accepted)
    emitted_tokens: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    accept_s: float = 0.0

    @property
    def draft_acceptance_rate(self) -> float:
        """Accepted / proposed draft tokens (vLLM's ``draft_acceptance_rate``)."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else float("nan")

    @property
    def alpha(self) -> float:
        """Per-token acceptance probability, as the formula models it: accepted / (accepted + rejections).

        The maximum-likelihood estimate for i.i.d. acceptance: a row-round is a run of accepts ended either by a
        rejection or by running out of draft tokens; the draft tokens after a rejection were never tested.
        """
        tested = self.accepted_tokens + self.rejections
        return self.accepted_tokens / tested if tested else float("nan")

    @property
    def mean_accepted_length(self) -> float:
        """Mean tokens emitted per row-round: accepted drafts + the correction or bonus token."""
        return 1 + self.accepted_tokens / self.rounds if self.rounds else float("nan")

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d.update(
            alpha=self.alpha,
            draft_acceptance_rate=self.draft_acceptance_rate,
            mean_accepted_length=self.mean_accepted_length,
        )
        return d


def expected_tokens_per_round(alpha: float, gamma: int) -> float:
    """``(1 - alpha^(gamma+1)) / (1 - alpha)``: expected tokens per round under i.i.d. acceptance ``alpha``."""
    if alpha >= 1:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def theoretical_speedup(alpha: float, gamma: int, c: float) -> float:
    """Leviathan et al.'s walltime improvement: ``(1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1))``."""
    if math.isnan(alpha):
        return float("nan")
    return expected_tokens_per_round(alpha, gamma) / (gamma * c + 1)


def alpha_from_tokens_per_round(tokens_per_round: float, gamma: int) -> float:
    """The i.i.d. ``alpha`` whose expected tokens per round equals a measured mean (bisection)."""
    lo, hi = 0.0, 1.0
    target = min(max(tokens_per_round, 1.0), gamma + 1.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        if expected_tokens_per_round(mid, gamma) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def residual_distribution(p: Tensor, q: Tensor) -> Tensor:
    """``max(0, p - q)`` (unnormalised): where a rejected position draws its replacement."""
    return (p - q).clamp_min(0)


def accept_draft_tokens(
    draft_tokens: Tensor,
    target_logits: Tensor,
    draft_probs: Tensor | None,
    temperature: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """The accept/reject step for a batch: returns (tokens ``[B, gamma+1]``, accepted count ``n`` ``[B]``).

    ``draft_tokens`` ``[B, gamma]``; ``target_logits`` ``[B, gamma+1, V]``; ``draft_probs`` ``[B, gamma, V]`` (unused
    when greedy). Row ``b``'s output is ``tokens[b, :n[b] + 1]``: the accepted drafts then one target token.
    """
    B, gamma = draft_tokens.shape
    rows = torch.arange(B, device=draft_tokens.device)
    if temperature <= 0:
        # greedy: accept while the draft equals the target's argmax; position n holds the target's own choice
        # (the correction after a mismatch, or the bonus after gamma matches). tokens[:, :n] equal the drafts.
        best = target_logits.argmax(dim=-1)
        match = draft_tokens == best[:, :gamma]
        n = match.long().cumprod(dim=1).sum(dim=1)
        return best, n
    assert draft_probs is not None
    p = logits_to_probs(target_logits, temperature)  # [B, gamma+1, V]
    p_d = p[:, :gamma].gather(-1, draft_tokens[..., None])[..., 0]
    q_d = draft_probs.gather(-1, draft_tokens[..., None])[..., 0]
    # accept d_i iff u_i < p_i(d_i) / q_i(d_i), written without the division (q_d > 0: d_i was drawn from q_i)
    u = torch.rand(p_d.shape, generator=generator, device=p_d.device)
    accept = u * q_d < p_d
    n = accept.long().cumprod(dim=1).sum(dim=1)
    # the distribution of the token at position n: the residual after a rejection, p_{gamma+1} after none
    resid = torch.cat([residual_distribution(p[:, :gamma], draft_probs), p[:, gamma:]], dim=1)
    r = resid[rows, n]
    # p and q can agree to rounding at a rejected position; then the residual is ~0 and p itself is the answer
    empty = r.sum(-1, keepdim=True) <= 1e-12
    r = torch.where(empty, p[rows, n], r)
    fix = sample_from_probs(r, generator)
    tokens = torch.cat([draft_tokens, draft_tokens[:, :1]], dim=1)
    tokens[rows, n] = fix
    return tokens, n


def speculative_decode(
    target: Transformer,
    draft: DraftModel,
    tcache: KVCache,
    dcache: KVCache,
    tokens: Tensor,
    lengths: Tensor,
    draft_lengths: Tensor,
    gamma: int,
    temperature: float,
    generator: torch.Generator | None,
    *,
    stats: SpecStats | None = None,
    active: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One speculative round for every row; returns (tokens ``[B, gamma+1]``, accepted count ``n`` ``[B]``).

    ``tokens[b, :lengths[b]]`` is row b's sequence; the target cache holds ``lengths - 1`` of it and the draft
    cache ``draft_lengths`` (one or two behind). The caller advances ``lengths`` by ``n + 1`` (the rollback)
    and sets the draft's valid length to ``lengths + min(n, gamma - 1)``.

    Cost per round, in forwards: ``gamma`` draft forwards and one target forward. The draft's first forward
    catches up on the tokens it has not seen (the newest token, plus ``d_gamma`` when all drafts were accepted
    last round, since the draft never fed its own last proposal) and its logits propose ``d_1``: catching up
    costs no forward of its own. Positions and attention lengths are computed once per round from the largest
    length (one read-back), so no forward of the round reads tensors back to Python.
    """
    dev = tokens.device
    L = lengths
    greedy = temperature <= 0
    t0 = time.perf_counter()
    missing = L - draft_lengths  # 1, or 2 after a round that accepted every draft
    l_max, width = torch.stack([L.max(), missing.max()]).tolist()
    # positions L-1 .. L-1+gamma of every row: the verification's, and (columns 1..gamma-1) the draft steps'
    vpos = (L - 1)[:, None] + _arange(gamma + 1, dev)
    # the target's attention length must be the one a plain decode would use (bitwise-equal greedy output)
    t_kv = attention_length(l_max - 1 + gamma, tcache.capacity)
    d_kv = attention_length(l_max - 2 + gamma, dcache.capacity)
    # --- draft: catch up on the 1 or 2 tokens the draft has not seen, which proposes d_1, then d_2..d_gamma
    idx = draft_lengths[:, None] + _arange(width, dev)
    logits = draft.model(
        tokens.gather(1, idx),
        idx,
        dcache,
        logits_index=missing - 1,  # the row's newest token
        n_layers=draft.n_layers,
        kv_len=d_kv,
        fast_attention=True,
    )[:, 0]
    drafted, qs = [], []
    for i in range(gamma):
        if i > 0:
            logits = draft.model(
                drafted[-1],
                vpos[:, i : i + 1],
                dcache,
                n_layers=draft.n_layers,
                kv_len=d_kv,
                fast_attention=True,
            )[:, 0]
        if greedy:
            d = logits.argmax(dim=-1, keepdim=True)
        else:
            q = logits_to_probs(logits, temperature)
            d = sample_from_probs(q, generator)[:, None]
            qs.append(q)
        drafted.append(d)
    t1 = time.perf_counter()
    # --- verify: the target scores the newest token and all drafts in one forward
    vin = torch.cat([tokens.gather(1, vpos[:, :1]), *drafted], dim=1)
    target_logits = target(vin, vpos, tcache, kv_len=t_kv)
    t2 = time.perf_counter()
    d_tok = vin[:, 1:]  # [B, gamma]
    out, n = accept_draft_tokens(
        d_tok, target_logits, None if greedy else torch.stack(qs, dim=1), temperature, generator
    )
    if stats is not None:
        counts = n.tolist() if active is None else n[active].tolist()
        stats.rounds += len(counts)
        stats.draft_tokens += gamma * len(counts)
        stats.accepted_tokens += sum(counts)
        stats.rejections += sum(c < gamma for c in counts)
        stats.draft_forwards += gamma
        stats.target_forwards += 1
        stats.draft_s += t1 - t0
        stats.verify_s += t2 - t1
        stats.accept_s += time.perf_counter() - t2
    return out, n
