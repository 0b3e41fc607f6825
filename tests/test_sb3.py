"""A third-party RL library trains on the environment: Stable-Baselines3 PPO on DiscreteActions (short run).

Whether it learns is measured by ``python -m benchmarks.sb3_ppo`` (a longer run against a random agent); this test
checks that the pieces fit: SB3's env checker, vectorised rollouts, a PPO update, and a trained policy acting.
"""

from __future__ import annotations

import pytest

pytest.importorskip("stable_baselines3")


def test_ppo_trains_briefly_and_acts():
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_checker import check_env
    from stable_baselines3.common.env_util import make_vec_env

    from clinic_env.env import ConsultationEnv
    from clinic_env.wrappers import DiscreteActions

    torch.set_num_threads(1)
    check_env(DiscreteActions(ConsultationEnv(max_turns=8)), warn=True)
    vec = make_vec_env(lambda: DiscreteActions(ConsultationEnv(max_turns=8)), n_envs=2, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    env = DiscreteActions(ConsultationEnv(max_turns=8))
    obs, info = env.reset(seed=3)
    done, steps = False, 0
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        assert env.action_space.contains(int(action))
        obs, reward, terminated, truncated, info = env.step(int(action))
        done, steps = terminated or truncated, steps + 1
    assert steps <= 8 and "score" in info
