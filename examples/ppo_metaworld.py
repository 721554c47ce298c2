"""Train Stable-Baselines3 PPO on a Meta-World task with a VLM's online score as the reward.

Needs `pip install 'topreward[rl,sim]'` and offscreen MuJoCo rendering (`scripts/install_sim_deps.sh`).
    python examples/ppo_metaworld.py --model Qwen/Qwen3-VL-8B-Instruct --steps 20000      # a real run (GPU)
    python examples/ppo_metaworld.py                                                     # offline smoke run
Without `--model`, a tiny random-weight Qwen3-VL is built locally: the loop runs end to end, but its rewards
mean nothing. The reward is TOPReward's log P(" True") change between queries every `--interval` steps
(`topreward.rl.TopRewardWrapper`), optionally mixed with the env's own reward (`--mix`).
"""

from __future__ import annotations

import argparse
import tempfile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="reach-v3", help="a task of `topreward sim --list-tasks`")
    ap.add_argument("--model", default=None, help="Hub id or folder (default: a tiny model built here)")
    ap.add_argument("--method", default="topreward", help="topreward, ensemble or instruction")
    ap.add_argument("--steps", type=int, default=2048, help="total environment steps")
    ap.add_argument("--n-steps", type=int, default=256, help="PPO rollout length")
    ap.add_argument("--batch-size", type=int, default=64, help="PPO minibatch size")
    ap.add_argument("--episode-steps", type=int, default=150, help="steps per episode")
    ap.add_argument("--interval", type=int, default=10, help="query the VLM every N steps")
    ap.add_argument("--reward", default="value_delta", help="value_delta, value, progress or progress_delta")
    ap.add_argument("--mix", type=float, default=0.0, help="weight of the env's own reward in [0, 1]")
    ap.add_argument("--size", type=int, default=224, help="rendered frame side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="save the trained policy here (.zip)")
    args = ap.parse_args(argv)

    from stable_baselines3 import PPO

    import topreward
    from topreward.rl import TopRewardWrapper
    from topreward.sim import TASK_INSTRUCTIONS, make_env
    from topreward.tiny import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_id = args.model or str(make_tiny_model(f"{tmp}/tiny", "qwen3_vl"))
        scorer = topreward.load_scorer(args.method, model=model_id)
        env = make_env(args.task, args.seed, size=args.size, max_steps=args.episode_steps)
        env = TopRewardWrapper(
            env,
            scorer,
            TASK_INSTRUCTIONS[args.task],
            interval=args.interval,
            reward=args.reward,
            mix=args.mix,
        )
        agent = PPO(
            "MlpPolicy",
            env,
            n_steps=args.n_steps,
            batch_size=args.batch_size,
            n_epochs=1 if args.model is None else 10,
            seed=args.seed,
            device="cpu",
            verbose=1,
        )
        agent.learn(total_timesteps=args.steps)
        if args.save:
            agent.save(args.save)
            print(f"saved {args.save}")
        env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
