"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny Llama and its tokenizer saved to a local folder (built once per test session)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from .tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
