two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=16 seed=0 run_id=g16-dfaa4a-s0 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g16-dfaa4a-s0
two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=16 seed=1 run_id=g16-dfaa4a-s1 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g16-dfaa4a-s1
two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=2 prompts_per_rollout=64 prompts_per_minibatch=64 lr=8e-4 seed=0 run_id=g2_paper-89eacf-s0 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g2_paper-89eacf-s0
two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=2 prompts_per_rollout=64 prompts_per_minibatch=64 lr=8e-4 seed=1 run_id=g2_paper-89eacf-s1 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g2_paper-89eacf-s1
two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=2 seed=0 run_id=g2_matched-a8e4d4-s0 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g2_matched-a8e4d4-s0
two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=2 seed=1 run_id=g2_matched-a8e4d4-s1 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g2_matched-a8e4d4-s1
two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=4 seed=0 run_id=g4_matched-8eee98-s0 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g4_matched-8eee98-s0
two-grpo train experiment=sweep_cpu budget.max_epochs=2 group_size=4 seed=1 run_id=g4_matched-8eee98-s1 hydra.run.dir=/work/wt/sweep/sweeps/smoke/g4_matched-8eee98-s1
