"""The right-padded generation loop of ``TransformersChatModel``: exact against transformers' ``generate``.

Greedy tokens must be identical to the left-padded ``generate`` path and to one-by-one generation for batches of
mixed-length prompts, whatever the prefill chunking; EOS and stop strings end rows independently; sampling is
seeded and draws from the right distribution; models the loop cannot serve fall back with a reason.
"""

from __future__ import annotations

import warnings

import pytest

from clinic_env.llm import LLMError
from clinic_env.llm.hf import TransformersChatModel, right_padded_support

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# Mixed lengths on purpose: 1 to ~10 sentences, so right padding leaves very different pad runs per row.
CONVS = [
    [{"role": "user", "content": "Hello."}],
    [{"role": "system", "content": "You are a patient."}, {"role": "user", "content": "Where is the pain?"}],
    [
        {"role": "system", "content": "You are a patient with chest pain that started last night."},
        {
            "role": "user",
            "content": "Do you have any allergies to medicines, for example penicillin or aspirin?",
        },
        {"role": "assistant", "content": "No, none that I know of."},
        {"role": "user", "content": "Do you smoke, and how much do you drink in a usual week?"},
    ],
    [{"role": "user", "content": "Any fever? " * 12}],
    [{"role": "user", "content": "Tell me about the cough."}],
]


def _varied(path, **load_kwargs):
    """The saved tiny Llama with its matrices redrawn at std 0.3 (seeded): as saved, its near-uniform logits make
    every greedy reply one repeated newline, which would make the equality tests below trivially true. Returns
    (model, tokenizer); every call gives the same weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, **load_kwargs)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in model.parameters():
            if w.ndim == 2:
                w.copy_(torch.randn(w.shape, generator=gen) * 0.3)
    return model, AutoTokenizer.from_pretrained(path)


def _load(
    path, *, load_kwargs: dict | None = None, eos: list[int] | None = None, **kwargs
) -> TransformersChatModel:
    model, tok = _varied(path, **(load_kwargs or {}))
    if eos is not None:
        model.generation_config.eos_token_id = eos
    return TransformersChatModel("tiny", model=model, tokenizer=tok, dtype="float32", device="cpu", **kwargs)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a loaded 2-core machine, intra-op threads of a tiny model mostly wait for each other
    (a batch-1 step took ~45 ms with the default threads, ~1 ms with one). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fast(tiny_model_path) -> TransformersChatModel:
    return _load(tiny_model_path)


@pytest.fixture(scope="module")
def ref(tiny_model_path) -> TransformersChatModel:
    return _load(tiny_model_path, generation="hf")


def _rows(model: TransformersChatModel, convs, max_tokens: int) -> list[list[int]]:
    """Greedy reply token ids of ``model``'s own path (no decoding to text, so nothing is hidden)."""
    prompts = [model.render(c) for c in convs]
    with torch.inference_mode():
        if model.generation == "right_padded":
            ids = model.tokenizer(prompts, add_special_tokens=False)["input_ids"]
            return model._generate_right_padded(ids, max_tokens, 0.0, 1.0, [])
        return model._generate_hf(prompts, max_tokens, 0.0, 1.0, [])[1]


def test_auto_picks_the_right_padded_loop_for_a_llama(fast, ref):
    assert right_padded_support(fast.model) is None
    assert fast.generation == "right_padded" and fast.fallback_reason is None
    assert ref.generation == "hf"
    lengths = {len(fast.tokenizer(fast.render(c))["input_ids"]) for c in CONVS}
    assert len(lengths) == len(CONVS), (
        "the prompts must have different lengths for this test to mean anything"
    )


def test_greedy_tokens_equal_transformers_generate_on_mixed_lengths(fast, ref):
    mine, theirs = _rows(fast, CONVS, 24), _rows(ref, CONVS, 24)
    assert mine == theirs
    assert all(len(r) == 24 for r in mine)  # this random model never emits EOS in 24 tokens
    assert all(len(set(r)) > 5 for r in mine) and len({tuple(r) for r in mine}) == len(CONVS)
    assert fast.generate(CONVS, max_tokens=24) == ref.generate(CONVS, max_tokens=24)


def test_greedy_batch_equals_batch_of_one(fast):
    batched = _rows(fast, CONVS, 16)
    single = [_rows(fast, [c], 16)[0] for c in CONVS]
    assert batched == single


@pytest.mark.parametrize("chunk_tokens", [1, 40, 100])
def test_prefill_chunking_does_not_change_tokens(tiny_model_path, ref, chunk_tokens):
    """Small budgets force several prefill groups (sorted by length) assembled into one decode cache."""
    chunked = _load(tiny_model_path, prefill_chunk_tokens=chunk_tokens)
    assert _rows(chunked, CONVS, 12) == _rows(ref, CONVS, 12)


def test_eos_ends_each_row_on_its_own(tiny_model_path, ref):
    """Declare a token the greedy replies produce as EOS: rows stop just before it, the others run on, and both
    paths agree, tokens and texts."""
    base = _rows(ref, CONVS, 10)
    # a token of row 2 that first appears at position j >= 2, so that row stops after j tokens
    j = next(j for j in range(2, 10) if base[2][j] not in base[2][:j])
    eos = base[2][j]
    models = [
        _load(tiny_model_path, generation=g, eos=[ref.tokenizer.eos_token_id, eos])
        for g in ("right_padded", "hf")
    ]
    m_fast, m_ref = models
    rows = _rows(m_fast, CONVS, 10)
    assert rows == _rows(m_ref, CONVS, 10)
    for got, full in zip(rows, base, strict=True):
        cut = full.index(eos) if eos in full else len(full)
        assert got == full[:cut]
    assert len(rows[2]) == j and any(len(r) == 10 for r in rows)
    assert m_fast.generate(CONVS, max_tokens=10) == m_ref.generate(CONVS, max_tokens=10)


def test_stop_strings_cut_each_reply_in_both_paths(fast, ref):
    full = fast.generate(CONVS, max_tokens=20)
    stop = next(t[5:8] for t in full if len(t) > 10 and t[5:8].strip())  # 3 characters from inside a reply
    got = fast.generate(CONVS, max_tokens=20, stop=[stop])
    assert got == ref.generate(CONVS, max_tokens=20, stop=[stop])
    for g, f in zip(got, full, strict=True):
        assert g == (f[: f.index(stop)].strip() if stop in f else f)
    assert any(stop in f for f in full) and any(g != f for g, f in zip(got, full, strict=True))


def test_usage_counts_match_transformers_generate(fast, ref):
    fast.generate(CONVS, max_tokens=7)
    ref.generate(CONVS, max_tokens=7)
    assert fast.usage.last_call == ref.usage.last_call
    assert fast.usage.last_call["completion_tokens"] == 7 * len(CONVS)
    assert fast.last_token_counts == ref.last_token_counts
    lengths = [len(fast.tokenizer(fast.render(c), add_special_tokens=False)["input_ids"]) for c in CONVS]
    assert fast.last_token_counts == [(n, 7) for n in lengths]


def test_seeded_sampling_is_reproducible_and_seed_dependent(fast):
    a = fast.generate(CONVS, max_tokens=8, temperature=0.9, seed=11)
    assert a == fast.generate(CONVS, max_tokens=8, temperature=0.9, seed=11)
    others = {tuple(fast.generate(CONVS, max_tokens=8, temperature=0.9, seed=s)) for s in range(5)}
    assert len(others) > 1
    state = torch.random.get_rng_state()
    fast.generate(CONVS[:1], max_tokens=3, temperature=1.0, seed=5)
    assert torch.equal(state, torch.random.get_rng_state()), (
        "a seeded generate must not advance the global RNG"
    )


def test_unseeded_sampling_draws_fresh_samples(fast):
    torch.manual_seed(0)
    draws = {tuple(fast.generate(CONVS, max_tokens=8, temperature=1.0)) for _ in range(4)}
    assert len(draws) > 1, "repeated unseeded calls must not replay one sample"


def test_sampler_draws_from_softmax_over_temperature_and_respects_top_p(fast):
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]]).repeat(20000, 1)
    torch.manual_seed(0)
    draws = fast._next_tokens(logits, 0.8, 1.0)
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    expect = (logits[0] / 0.8).softmax(-1)
    assert torch.allclose(freq, expect, atol=0.015), (freq, expect)
    # top_p=0.8 keeps the smallest set of tokens whose mass reaches 0.8: tokens 0 and 1 (0.71 + 0.21).
    draws = fast._next_tokens(logits, 0.8, 0.8)
    assert set(draws.tolist()) == {0, 1}
    kept = expect[:2] / expect[:2].sum()
    freq = torch.bincount(draws, minlength=5).float()[:2] / len(draws)
    assert torch.allclose(freq, kept, atol=0.015)
    assert torch.equal(fast._next_tokens(logits[:3], 0.0, 1.0), torch.zeros(3, dtype=torch.long))


def test_models_the_loop_cannot_serve_fall_back_with_a_reason(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    model.generation_config.repetition_penalty = 1.3
    with pytest.warns(UserWarning, match="repetition_penalty"):
        m = TransformersChatModel("rep", model=model, tokenizer=tok, device="cpu")
    assert m.generation == "hf" and "repetition_penalty" in (m.fallback_reason or "")
    assert m.generate(CONVS[:2], max_tokens=4)  # still serves, through transformers' generate
    with pytest.raises(LLMError, match=r"repetition_penalty.*generation='hf'"):
        TransformersChatModel("rep", model=model, tokenizer=tok, device="cpu", generation="right_padded")


def test_sliding_window_models_fall_back(tiny_model_path):
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    cfg = MistralConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        sliding_window=16,
    )
    reason = right_padded_support(MistralForCausalLM(cfg))
    assert reason is not None and "sliding_attention" in reason


def test_eager_attention_is_exact_too(tiny_model_path, ref):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: eager attention is served
        m = _load(tiny_model_path, load_kwargs={"attn_implementation": "eager"}, prefill_chunk_tokens=60)
    assert m.model.config._attn_implementation == "eager" and m.generation == "right_padded"
    assert _rows(m, CONVS, 10) == _rows(ref, CONVS, 10)


def test_bad_generation_settings(fast, tiny_model_path):
    with pytest.raises(ValueError, match="generation must be one of"):
        _load(tiny_model_path, generation="fast")
    with pytest.raises(ValueError, match="prefill_chunk_tokens"):
        _load(tiny_model_path, prefill_chunk_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        fast.generate(CONVS, max_tokens=2, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        fast.generate(CONVS, max_tokens=2, temperature=-0.1)
    with pytest.raises(TypeError, match="stop must be a list"):
        fast.generate(CONVS, max_tokens=2, stop="\n")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        fast.generate(CONVS, max_tokens=2, stop=[""])
