#!/bin/bash
# Feature extraction on a SLURM cluster: one torchrun per node, one process per GPU.
#   sbatch tutorials/slurm_extract.sh
# Resubmitting the same script (with more or fewer nodes) resumes where the last job stopped.
# MODEL, STIMULI, OUT, LAYERS, GPUS_PER_NODE, BATCH_SIZE and PORT (rendezvous) can be set in
# the environment.
#SBATCH --job-name=features
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
set -euo pipefail

MODEL=${MODEL:-resnet50}
STIMULI=${STIMULI:-/shared/stimuli}
OUT=${OUT:-/shared/features/$MODEL}
LAYERS=${LAYERS:-layer3 avgpool}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
BATCH_SIZE=${BATCH_SIZE:-64}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${PORT:-29500}

# shellcheck disable=SC2086  # LAYERS is a list of layer names
srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node "$GPUS_PER_NODE" \
    --rdzv_backend c10d --rdzv_endpoint "$head_node:$PORT" --rdzv_id "$SLURM_JOB_ID" \
    -m torchlens_like extract "$MODEL" "$STIMULI" --layers $LAYERS --out "$OUT" \
    --batch-size "$BATCH_SIZE"
