"""deploy.quantize: quantization maths, quantized linears against dequantized matmuls, weight bytes, save/load round
trips (our runtime and transformers models, GPT-2's Conv1D included), the scheme registry, and KV-cache dtypes."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchao")

import torch.nn.functional as F  # noqa: E402

from deploy.model import Transformer, load_transformer  # noqa: E402
from deploy.quantize import (  # noqa: E402
    SCHEMES,
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    get_scheme,
    load_quantized_hf,
    model_weight_bytes,
    pack_nibbles,
    quantize_int4_groups,
    quantize_int8_channels,
    quantize_model,
    save_quantized,
    state_dict_bytes,
    unpack_nibbles,
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hf_llama(vocab=256, hidden=128, layers=2, heads=4, kv_heads=2, seed=0, init=0.05):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        initializer_range=init,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


def logits(model: Transformer, toks, kv_cache_dtype="auto"):
    B, T = toks.shape
    with torch.no_grad():
        return model(
            toks, torch.arange(T).expand(B, T), model.new_cache(B, T + 8, kv_cache_dtype=kv_cache_dtype)
        )


def rel_error(a, b) -> float:
    """Relative L2 error of logits (random models' argmaxes are near ties, so they make a flaky measure)."""
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------------------------- maths
def test_int8_weights_are_torchaos():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    w = torch.randn(48, 64)
    lin = torch.nn.Sequential(torch.nn.Linear(64, 48, bias=False))
    lin[0].weight.data = w.clone()
    quantize_(lin, Int8WeightOnlyConfig())
    q, s = quantize_int8_channels(w)
    assert torch.equal(q, lin[0].weight.qdata)
    torch.testing.assert_close(s, lin[0].weight.scale.flatten())


def test_int4_groups_round_trip_within_half_a_step():
    w = torch.randn(32, 256)
    for g in (32, 64, 128):
        q, s, z = quantize_int4_groups(w, g)
        assert q.min() >= 0 and q.max() <= 15
        assert torch.equal(unpack_nibbles(pack_nibbles(q)), q)
        deq = dequantize_int4(pack_nibbles(q), s, z)
        step = s.repeat_interleave(g, dim=1)
        assert ((deq - w).abs() <= step / 2 + 1e-5).all()


@pytest.mark.parametrize("rows", [1, 5, 200])  # the kernel path (small M) and the GEMM path (prefill)
def test_int8_linear_matches_dequantized_matmul(rows):
    lin = torch.nn.Linear(64, 40)
    q, s = quantize_int8_channels(lin.weight.detach())
    m = Int8Linear(64, 40, bias=True)
    m.load_state_dict({"weight": q, "scales": s, "bias": lin.bias.detach()})
    x = torch.randn(rows, 64)
    ref = F.linear(x, q.float() * s[:, None], lin.bias.detach())
    # bf16 activations inside the matmul (W8A16): agreement to bf16 precision
    torch.testing.assert_close(m(x), ref, atol=3e-2, rtol=2e-2)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_linear_matches_dequantized_matmul(group):
    lin = torch.nn.Linear(128, 40)  # N = 40: not a multiple of 16, the kernel's rows are padded
    q, s, z = quantize_int4_groups(lin.weight.detach(), group)
    packed = pack_nibbles(q)
    m = Int4Linear(128, 40, bias=True, group_size=group)
    m.load_state_dict(
        {"weight": packed, "scales": s.bfloat16(), "zeros": z.bfloat16(), "bias": lin.bias.detach()}
    )
    x = torch.randn(3, 7, 128)
    ref = F.linear(x, dequantize_int4(packed, s.bfloat16(), z.bfloat16()), lin.bias.detach())
    out = m(x)
    assert out.shape == (3, 7, 40)
    torch.testing.assert_close(out, ref, atol=5e-2, rtol=2e-2)


# ---------------------------------------------------------------------------------------------- bytes
def test_weight_bytes_shrink_as_promised():
    hf = hf_llama(vocab=512, hidden=256, layers=2)
    m = Transformer.from_hf_state_dict(hf.config, hf.state_dict())
    fp32 = model_weight_bytes(m)
    assert fp32 == 4 * sum(p.numel() for p in m.parameters())
    sizes = {}
    for name in ("int8", "int4-g32", "int4-g128"):
        state = get_scheme(name).create_quantized_state_dict(m)
        sizes[name] = state_dict_bytes(state)
    assert fp32 / sizes["int8"] > 3.8
    assert fp32 / sizes["int4-g32"] > 6.0
    assert fp32 / sizes["int4-g128"] > 7.0


# ---------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("scheme", ["int8", "int4-g32", "int4-g128"])
def test_save_load_round_trip(tmp_path, scheme):
    hf = hf_llama()
    toks = torch.randint(0, 256, (2, 12))
    float_model = Transformer.from_hf_state_dict(hf.config, hf.state_dict())
    in_memory = quantize_model(Transformer.from_hf_state_dict(hf.config, hf.state_dict()), scheme)
    out = save_quantized(hf, tmp_path / "q", scheme)
    meta = json.loads((out / "quantization.json").read_text())
    assert meta["scheme"] == scheme and "model.layers.0.self_attn.q_proj" in meta["quantized_modules"]
    assert meta["aliases"] == {"lm_head.weight": "model.embed_tokens.weight"} or "lm_head.weight" in str(
        meta["aliases"]
    )
    loaded = load_transformer(out)
    assert loaded.quant_scheme == scheme
    # the saved tensors load into our fused runtime exactly as the in-memory quantization
    assert torch.equal(logits(loaded, toks), logits(in_memory, toks))
    ref = logits(float_model, toks)
    assert rel_error(logits(loaded, toks), ref) < (0.05 if scheme == "int8" else 0.45)
    # and into a transformers model, exactly as quantizing that model in memory
    hf_q = load_quantized_hf(out)
    hf_mem = quantize_model(hf_llama(), scheme)
    with torch.no_grad():
        assert torch.equal(hf_q(toks).logits, hf_mem(toks).logits)
    assert model_weight_bytes(loaded) < model_weight_bytes(float_model) / 3


def test_any_transformers_causal_lm_gpt2_conv1d(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64)).eval()
    toks = torch.randint(0, 128, (2, 10))
    with torch.no_grad():
        ref = gpt(toks).logits
    out = save_quantized(gpt, tmp_path / "gpt2-int8", "int8")
    q = load_quantized_hf(out)
    assert type(q.transformer.h[0].attn.c_attn).__name__ == "Int8Linear"  # Conv1D swapped like a Linear
    with torch.no_grad():
        got = q(toks).logits
    torch.testing.assert_close(got, ref, atol=0.15, rtol=0.1)


def test_registry_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown quantization scheme 'int3'.*int4-g32"):
        get_scheme("int3")
    assert get_scheme("int4").name in SCHEMES
    with pytest.raises(ValueError, match="in memory only"):
        save_quantized(hf_llama(), tmp_path / "x", "int8-torchao")
    out = save_quantized(hf_llama(), tmp_path / "ok", "int8")
    meta = json.loads((out / "quantization.json").read_text())
    meta["scheme"] = "int5"
    (out / "quantization.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown quantization scheme 'int5'"):
        load_transformer(out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_quantized(tmp_path / "missing", tmp_path / "y", "int8")
    m = quantize_model(Transformer.from_hf_state_dict(hf_llama().config, hf_llama().state_dict()), "int8")
    with pytest.raises(RuntimeError, match="cannot be re-saved"):
        m.state_dict()


def test_torchao_reference_schemes_run():
    hf = hf_llama()
    m = Transformer.from_hf_state_dict(hf.config, hf.state_dict())
    toks = torch.randint(0, 256, (1, 8))
    ref = logits(m, toks)
    for name, tol in (("int8-torchao", 0.05), ("int4-torchao", 0.45)):
        q = quantize_model(Transformer.from_hf_state_dict(hf.config, hf.state_dict()), name)
        assert rel_error(logits(q, toks), ref) < tol


# ---------------------------------------------------------------------------------------------- KV cache
@pytest.mark.parametrize("kv", ["bfloat16", "fp8"])
def test_kv_cache_precision(kv):
    hf = hf_llama()
    m = Transformer.from_hf_state_dict(hf.config, hf.state_dict())
    toks = torch.randint(0, 256, (2, 16))
    ref, got = logits(m, toks), logits(m, toks, kv_cache_dtype=kv)
    assert (got - ref).abs().max() > 0  # values really went through the narrow dtype
    torch.testing.assert_close(got, ref, atol=0.1, rtol=0.1)
    cache = m.new_cache(1, 8, kv_cache_dtype=kv)
    assert cache.k.dtype == (torch.float8_e4m3fn if kv == "fp8" else torch.bfloat16)
    assert cache.nbytes() < m.new_cache(1, 8).nbytes() / (3 if kv == "fp8" else 1.9)
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        m.new_cache(1, 8, kv_cache_dtype="int2")
