"""deploy.model / deploy.generate / deploy.speculative: parity with transformers, exact greedy speculative output
(batch 1 and batched, separate draft and self-draft), KV rollback, and a chi-square test of the sampler."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from deploy import speculative  # noqa: E402
from deploy.generate import Decoder, DraftModel, generate_tokens  # noqa: E402
from deploy.model import Transformer  # noqa: E402
from deploy.speculative import (  # noqa: E402
    SpecStats,
    alpha_from_tokens_per_round,
    expected_tokens_per_round,
    theoretical_speedup,
)


def hf_llama(vocab=96, hidden=64, layers=3, heads=4, kv_heads=2, seed=0, init=0.15, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        initializer_range=init,  # larger than usual: decisive, non-degenerate greedy text from random weights
        **kw,
    )
    return LlamaForCausalLM(cfg).eval()


def ours(hf):
    return Transformer.from_hf_state_dict(hf.config, hf.state_dict())


def perturbed(model: Transformer, scale: float, seed: int = 1) -> Transformer:
    """A different model that agrees with ``model`` only part of the time (acceptance strictly between 0 and 1)."""
    import copy

    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.std())
    return other


@pytest.fixture(scope="module")
def target():
    return ours(hf_llama())


PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30], [3, 4, 5]]


# ---------------------------------------------------------------------------------------------- model parity
@pytest.mark.parametrize("kind", ["llama-gqa-tied", "llama-bias-untied-linear-rope", "qwen2"])
def test_forward_matches_transformers_with_per_row_lengths(kind):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if kind == "qwen2":
        torch.manual_seed(0)
        cfg = Qwen2Config(
            vocab_size=97,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
        hf = Qwen2ForCausalLM(cfg).eval()
    elif kind == "llama-gqa-tied":
        hf = hf_llama(vocab=97, tie_word_embeddings=True)
    else:
        hf = hf_llama(
            vocab=97,
            kv_heads=4,
            tie_word_embeddings=False,
            attention_bias=True,
            mlp_bias=True,
            rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
        )
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if n.endswith("bias"):
                p.normal_()
    m = ours(hf)
    lens = [7, 11, 4]
    B, T = len(lens), max(lens)
    toks = torch.randint(0, 97, (B, T))
    cache = m.new_cache(B, 40)
    with torch.no_grad():
        out = m(toks, torch.arange(T).expand(B, T), cache)
        for i, n in enumerate(lens):
            ref = hf(toks[i : i + 1, :n]).logits[0]
            torch.testing.assert_close(out[i, :n], ref, atol=2e-5, rtol=1e-4)
        # then decode at per-row positions: row i continues at position lens[i], whatever the others do
        seqs = [toks[i, :n].tolist() for i, n in enumerate(lens)]
        L = torch.tensor(lens)
        for _ in range(3):
            nxt = torch.randint(0, 97, (B,))
            o = m(nxt[:, None], L[:, None], cache)[:, 0]
            for i in range(B):
                seqs[i].append(int(nxt[i]))
                torch.testing.assert_close(
                    o[i], hf(torch.tensor([seqs[i]])).logits[0, -1], atol=2e-5, rtol=1e-4
                )
            L = L + 1


@pytest.mark.parametrize("packed", [False, True])
def test_bf16_verification_is_bitwise_the_sequential_decode(packed):
    """Greedy exactness in bfloat16 needs verify(x, d1..d4) to compute, bit for bit, what five one-token decodes
    compute (logit ties are common at that precision): row-consistent attention and linears make it so."""
    from deploy.model import pack_linears

    m = ours(hf_llama(vocab=96, hidden=64, layers=3)).to(torch.bfloat16)
    if packed:
        assert pack_linears(m) > 0
    for P in (
        20,
        61,
        130,
    ):  # verification windows inside and across the 64-key blocks of the attention length
        toks = torch.randint(0, 96, (2, P + 5))
        with torch.no_grad():
            c1 = m.new_cache(2, 256)
            m(toks[:, :P], torch.arange(P).expand(2, P), c1)
            one_by_one = torch.cat(
                [m(toks[:, P + i : P + i + 1], torch.full((2, 1), P + i), c1) for i in range(5)], dim=1
            )
            c2 = m.new_cache(2, 256)
            m(toks[:, :P], torch.arange(P).expand(2, P), c2)
            together = m(toks[:, P : P + 5], torch.arange(P, P + 5).expand(2, 5), c2)
        assert torch.equal(one_by_one, together)


def test_explicit_kv_len_matches_the_default_and_is_checked():
    """A decode loop passes ``kv_len`` (no read-back of positions per forward): the same value gives the same bits,
    and a length past the cache is refused with the capacity in the message."""
    from deploy.model import KV_BLOCK, attention_length

    assert attention_length(0, 1000) == KV_BLOCK
    assert attention_length(KV_BLOCK - 1, 1000) == KV_BLOCK
    assert attention_length(KV_BLOCK, 1000) == 2 * KV_BLOCK
    assert attention_length(900, 920) == 920  # never past the capacity
    m = ours(hf_llama()).to(torch.bfloat16)
    toks = torch.randint(0, 96, (2, 70))
    outs = []
    for kv in (None, attention_length(69, 100)):
        cache = m.new_cache(2, 100)
        with torch.no_grad():
            m(toks[:, :65], torch.arange(65).expand(2, 65), cache)
            outs.append(m(toks[:, 65:], torch.arange(65, 70).expand(2, 5), cache, kv_len=kv))
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="kv_len 128 is past the KV cache capacity 100"):
        m(toks[:, :1], torch.zeros(2, 1, dtype=torch.long), m.new_cache(2, 100), kv_len=128)


def test_unsupported_architecture_is_refused():
    from transformers import GPT2Config

    from deploy.model import ModelArgs

    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
        ModelArgs.from_hf_config(GPT2Config())


# ---------------------------------------------------------------------------------------------- greedy exactness
def _record_acceptance(monkeypatch):
    seen: list[list[int]] = []
    orig = speculative.accept_draft_tokens

    def spy(*args, **kwargs):
        out, n = orig(*args, **kwargs)
        seen.append(n.tolist())
        return out, n

    monkeypatch.setattr(speculative, "accept_draft_tokens", spy)
    return seen


@pytest.mark.parametrize("draft_kind", ["separate", "self"])
@pytest.mark.parametrize("gamma", [1, 4])
def test_greedy_speculative_equals_target_alone(target, draft_kind, gamma, monkeypatch):
    draft = DraftModel(perturbed(target, 0.6)) if draft_kind == "separate" else DraftModel(target, 1)
    ref = generate_tokens(target, PROMPTS, max_new_tokens=30)
    seen = _record_acceptance(monkeypatch)
    stats = SpecStats(gamma=gamma)
    got = generate_tokens(target, PROMPTS, max_new_tokens=30, draft=draft, gamma=gamma, stats=stats)
    assert got == ref  # batched, rows of different lengths
    for p, r in zip(PROMPTS, ref, strict=True):  # batch of one
        assert generate_tokens(target, [p], max_new_tokens=30, draft=draft, gamma=gamma) == [r]
    assert 0 < stats.accepted_tokens < stats.draft_tokens, "acceptance must be partial for this test to bite"
    if gamma > 1:
        assert any(len(set(n)) > 1 for n in seen), "rows should accept different counts in the same round"
    assert all(len(r) == 30 for r in got)


def test_stop_tokens_and_max_tokens_agree_between_plain_and_speculative(target):
    ref = generate_tokens(target, PROMPTS, max_new_tokens=25)
    stop = ref[0][7]  # a token row 0 produces: row 0 must stop just before its first occurrence
    plain = generate_tokens(target, PROMPTS, max_new_tokens=25, stop_ids=[stop])
    spec = generate_tokens(
        target, PROMPTS, max_new_tokens=25, stop_ids=[stop], draft=DraftModel(perturbed(target, 0.6)), gamma=3
    )
    assert plain == spec
    assert plain[0] == ref[0][: ref[0].index(stop)]
    assert all(stop not in row for row in plain)
    five = generate_tokens(target, [[1, 2]], max_new_tokens=5)[0]
    assert generate_tokens(target, [[1, 2]], max_new_tokens=1) == [five[:1]]


def test_kv_rollback_leaves_exactly_the_accepted_prefix(target):
    draft = DraftModel(perturbed(target, 0.6))
    dec = Decoder(target, PROMPTS, max_new_tokens=20, draft=draft, gamma=4, compact=False)
    dec.run()
    assert dec.stats.rejections > 0  # rejected draft tokens were written into the cache and rolled back
    L = dec.lengths
    for b in range(len(PROMPTS)):
        n = int(L[b]) - 1  # tokens in the target cache
        seq = dec.tokens[b : b + 1, :n]
        fresh = target.new_cache(1, dec.tcache.capacity)
        with torch.no_grad():
            target(seq, torch.arange(n)[None], fresh)
        torch.testing.assert_close(dec.tcache.k[:, b, :, :n], fresh.k[:, 0, :, :n], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(dec.tcache.v[:, b, :, :n], fresh.v[:, 0, :, :n], atol=1e-5, rtol=1e-4)
        # the draft cache holds exactly its valid prefix too
        nd = int(dec.draft_len[b])
        dfresh = draft.model.new_cache(1, dec.tcache.capacity)
        with torch.no_grad():
            draft.model(dec.tokens[b : b + 1, :nd], torch.arange(nd)[None], dfresh)
        torch.testing.assert_close(dec.dcache.k[:, b, :, :nd], dfresh.k[:, 0, :, :nd], atol=1e-5, rtol=1e-4)


def test_compaction_keeps_outputs(target):
    # rows finish at very different times (stop token) and are dropped from the batch; outputs do not change
    ref = generate_tokens(target, PROMPTS, max_new_tokens=25)
    stops = [ref[1][2]]
    a = Decoder(
        target, PROMPTS, max_new_tokens=25, stop_ids=stops, draft=DraftModel(target, 2), gamma=3
    ).run()
    b = Decoder(
        target,
        PROMPTS,
        max_new_tokens=25,
        stop_ids=stops,
        draft=DraftModel(target, 2),
        gamma=3,
        compact=False,
    ).run()
    assert a == b


def test_bad_arguments_are_refused(target):
    with pytest.raises(ValueError, match="gamma"):
        Decoder(target, PROMPTS, max_new_tokens=5, draft=DraftModel(target, 1), gamma=0)
    with pytest.raises(ValueError, match="no tokens"):
        Decoder(target, [[1], []], max_new_tokens=5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Decoder(target, [[1, 10_000]], max_new_tokens=5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        Decoder(target, [[1]], max_new_tokens=0)


# ---------------------------------------------------------------------------------------------- sampling
V = 8


def _chi_square_p(counts, expected) -> float:
    """Pearson chi-square p-value, cells with expected < 5 merged (smallest first)."""
    order = expected.flatten().argsort()
    e, c = expected.flatten()[order].tolist(), counts.flatten()[order].tolist()
    E, C, acc_e, acc_c = [], [], 0.0, 0.0
    for ei, ci in zip(e, c, strict=True):
        acc_e, acc_c = acc_e + ei, acc_c + ci
        if acc_e >= 5:
            E.append(acc_e)
            C.append(acc_c)
            acc_e = acc_c = 0.0
    E[-1] += acc_e
    C[-1] += acc_c
    E_, C_ = torch.tensor(E, dtype=torch.float64), torch.tensor(C, dtype=torch.float64)
    stat = ((C_ - E_) ** 2 / E_).sum()
    df = len(E) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2))


def test_sampling_preserves_the_target_distribution(monkeypatch):
    """Joint law of generated tokens 2 and 3 (both from accept/reject rounds) against the exact law computed from
    the target alone. A wrong sampler (resampling from p instead of the residual max(0, p - q)) is checked to fail
    the same test, so the test has power."""
    t = ours(hf_llama(vocab=V, hidden=32, layers=2, heads=2, kv_heads=2, seed=0, init=0.3))
    d = DraftModel(ours(hf_llama(vocab=V, hidden=16, layers=1, heads=1, kv_heads=1, seed=1, init=0.5)))
    prompt, temp, N = [1, 2, 3], 1.0, 6000

    def probs(seq):
        with torch.no_grad():
            lg = t(torch.tensor([seq]), torch.arange(len(seq))[None], t.new_cache(1, 16))[0, -1]
        return torch.softmax(lg.double() / temp, -1)

    p1 = probs(prompt)
    exact = torch.zeros(V, V, dtype=torch.float64)  # P(t2 = b, t3 = c) = sum_a p(a) p(b | a) p(c | a, b)
    for a in range(V):
        p2 = probs([*prompt, a])
        for b in range(V):
            exact[b] += p1[a] * p2[b] * probs([*prompt, a, b])

    def sample_counts(seed):
        g = torch.Generator().manual_seed(seed)
        out = torch.tensor(
            Decoder(t, [prompt] * N, max_new_tokens=3, temperature=temp, generator=g, draft=d, gamma=2).run()
        )
        counts = torch.zeros(V, V, dtype=torch.float64)
        counts.index_put_((out[:, 1], out[:, 2]), torch.ones(N, dtype=torch.float64), accumulate=True)
        return counts

    stats = SpecStats()
    g = torch.Generator().manual_seed(0)
    Decoder(
        t, [prompt] * 200, max_new_tokens=3, temperature=temp, generator=g, draft=d, gamma=2, stats=stats
    ).run()
    assert 0.05 < stats.draft_acceptance_rate < 0.95  # both branches (accept, residual) are exercised

    assert _chi_square_p(sample_counts(1), exact * N) > 0.01
    monkeypatch.setattr(speculative, "residual_distribution", lambda p, q: p)
    assert _chi_square_p(sample_counts(1), exact * N) < 0.01


def test_seeded_sampling_is_repeatable(target):
    draft = DraftModel(target, 1)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return Decoder(
            target, PROMPTS, max_new_tokens=12, temperature=0.9, generator=g, draft=draft, gamma=3
        ).run()

    assert run(5) == run(5)
    assert run(5) != run(6)


# ---------------------------------------------------------------------------------------------- the maths
def test_speedup_formula_and_alpha_estimates():
    assert expected_tokens_per_round(0.0, 4) == 1
    assert expected_tokens_per_round(1.0, 4) == 5
    assert expected_tokens_per_round(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    # Leviathan et al.'s example values: alpha 0.8, gamma 4 and c 0.05 -> about 2.8x
    assert theoretical_speedup(0.8, 4, 0.05) == pytest.approx((1 - 0.8**5) / (0.2 * 1.2))
    assert alpha_from_tokens_per_round(expected_tokens_per_round(0.7, 4), 4) == pytest.approx(0.7, abs=1e-9)
    s = SpecStats(gamma=4, rounds=10, draft_tokens=40, accepted_tokens=30, rejections=4)
    assert s.alpha == pytest.approx(30 / 34)
    assert s.draft_acceptance_rate == pytest.approx(0.75)
    assert s.mean_accepted_length == pytest.approx(4.0)


def test_benchmark_gamma_rule_is_the_fastest_gamma_on_calibration(target):
    """``benchmarks.speculative.choose_gamma`` decodes its calibration prompts at every gamma, paired with the target
    alone, returns the gamma with the highest measured speedup, and every calibration decode is exact."""
    from benchmarks.speculative import CAL_GAMMA, GAMMAS, choose_gamma

    draft = DraftModel(perturbed(target, 0.3))
    choice = choose_gamma(target, draft, [p for p in PROMPTS[:2]], 10)
    by_gamma = choice["calibration_by_gamma"]
    assert set(by_gamma) == {str(g) for g in GAMMAS}
    assert choice["gamma"] == max(GAMMAS, key=lambda g: by_gamma[str(g)]["speedup"])
    alpha, c = choice["alpha"], choice["c"]
    assert (alpha, c) == (by_gamma[str(CAL_GAMMA)]["alpha"], by_gamma[str(CAL_GAMMA)]["c"])
    assert 0 < alpha <= 1 and c > 0
    theo = {g: theoretical_speedup(alpha, g, c) for g in GAMMAS}
    assert choice["formula_argmax_gamma"] == max(GAMMAS, key=lambda g: theo[g])
    assert choice["calibration_greedy_identical"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared machine idle OpenMP threads only spin."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
