"""Cost of one RL step in the tiny world: TRL's `GRPOTrainer` with its defaults against the project's DAPO recipe, with and
without length-bucketed micro-batches and with the `compact` rollout engine (rows dropped at their EOS), on the same
model, prompts and batch, measured in one process.

usage: .venv/bin/python bench/rl_step.py MODEL_DIR [--profile tiny-full] [--steps 4] [--threads 2] [--budgets 0,4096]
                                         [--engines hf,compact] [--also MODEL_DIR2]
MODEL_DIR: a saved model folder, e.g. an SFT checkpoint of the `full` data set (runs/sft-*/checkpoints/checkpoint-N).
--also: further model folders (e.g. the same recipe's checkpoint with `tokenizer = pieces`), each measured with TRL's
defaults and the project's last variant in the same process; every ratio is against MODEL_DIR's TRL defaults.
Prints seconds per step (median over --steps after one warm-up step), tokens per step and each variant's ratio
against TRL's defaults. Run it on an otherwise idle machine: it measures wall time.
"""
import argparse, json, statistics, tempfile, time
import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from plasticity_nb.config import load_profile, spec
from plasticity_nb.experiments import world
from plasticity_nb.models import load_local
from plasticity_nb.rewards import math_reward
from plasticity_nb.rl import DAPOTrainer, dapo_config
from plasticity_nb.trl_hooks import with_rollout_engine, trl_engine_kwargs


class StepClock(TrainerCallback):
    "Wall seconds of every optimizer step (generation included)"
    def __init__(self): self.t, self.times = None, []
    def on_step_begin(self, *a, **k): self.t = time.perf_counter()
    def on_step_end(self, *a, **k): self.times.append(time.perf_counter() - self.t)


def prompts(prof):
    return Dataset.from_list([{**r, 'answer': str(r['answer'])} for r in world(prof)['rl'][:512]])


def trl_defaults(model_dir, prof, out, steps):
    "TRL's GRPOTrainer, its defaults, with the recipe's batch (prompts x group), response limit and temperature"
    s = spec(prof, 'rl')
    rows = s.batch * s.group_size
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=rows, num_generations=s.group_size, max_steps=steps,
                      max_completion_length=s.max_new_tokens, temperature=s.temperature, learning_rate=s.lr, report_to='none',
                      save_strategy='no', logging_steps=1, disable_tqdm=True, bf16=False, use_cpu=True)
    model, tok = load_local(model_dir)
    return GRPOTrainer(model=model, reward_funcs=[math_reward], args=args, train_dataset=prompts(prof), processing_class=tok)


def project(model_dir, prof, out, steps, budget, engine='hf'):
    "The project's DAPO_dc as `run_rl` builds it (dynamic sampling, clip-higher), `budget` padded tokens per micro-batch, rollouts by `engine`"
    s = spec(prof, 'rl')
    args = dapo_config(out, 'dc', lr=s.lr, batch=s.batch, gen_batch=s.gen_batch, group_size=s.group_size, steps=steps,
                       max_new_tokens=s.max_new_tokens, temperature=s.temperature, ds_rounds=s.ds_rounds, seed=s.seed,
                       micro_batch_tokens=budget, collapse_patience=0, use_cpu=True, **trl_engine_kwargs(engine))
    model, tok = load_local(model_dir)
    return with_rollout_engine(DAPOTrainer, engine)(model=model, reward_funcs=[math_reward], args=args, train_dataset=prompts(prof), processing_class=tok)


def measure(trainer, steps):
    clock = StepClock(); trainer.add_callback(clock)
    trainer.train()
    logs = [l for l in trainer.state.log_history if 'loss' in l]
    toks = statistics.mean(l.get('num_tokens', float('nan')) for l in logs[:1]) if logs else float('nan')
    return dict(s_per_step=statistics.median(clock.times[1:]), first=clock.times[0], steps=len(clock.times),
                rounds=statistics.mean(l.get('ds/rounds', 1) for l in logs), mean_len=statistics.mean(l.get('completions/mean_length', float('nan')) for l in logs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('model'); ap.add_argument('--profile', default='tiny-full'); ap.add_argument('--steps', type=int, default=4)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--budgets', default='0,4096')
    ap.add_argument('--engines', default='hf', help='rollout engines of the project variants (the last budget), e.g. hf,compact')
    ap.add_argument('--also', default='', help='comma-separated further model folders (another tokenizer), measured with TRL defaults and the last variant')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    prof = load_profile(a.profile)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0); res['trl_grpo_defaults'] = measure(trl_defaults(a.model, prof, f'{d}/trl', a.steps + 1), a.steps + 1)
        for b in [int(x) for x in a.budgets.split(',')]:
            torch.manual_seed(0); res[f'project_dapo_micro{b}'] = measure(project(a.model, prof, f'{d}/p{b}', a.steps + 1, b), a.steps + 1)
        for e in [x for x in a.engines.split(',') if x != 'hf']:
            torch.manual_seed(0); res[f'project_dapo_micro{b}_{e}'] = measure(project(a.model, prof, f'{d}/p{b}{e}', a.steps + 1, b, e), a.steps + 1)
        last = a.engines.split(',')[-1]  # the project's last variant: the last budget on the last engine
        for i, m in enumerate(x for x in a.also.split(',') if x):
            torch.manual_seed(0); res[f'also{i}_trl_grpo_defaults'] = measure(trl_defaults(m, prof, f'{d}/a{i}trl', a.steps + 1), a.steps + 1)
            torch.manual_seed(0); res[f'also{i}_project_dapo_micro{b}_{last}'] = measure(project(m, prof, f'{d}/a{i}p', a.steps + 1, b, last), a.steps + 1)
    base = res['trl_grpo_defaults']['s_per_step']
    for k, v in res.items():
        print(f"{k:28s} {v['s_per_step']:7.2f} s/step  x{base / v['s_per_step']:5.2f} vs TRL defaults   "
              f"(gen rounds {v['rounds']:.2f}, mean completion {v['mean_len']:.1f} tokens, {v['steps']} steps)")
    print(json.dumps(res))


if __name__ == '__main__': main()
