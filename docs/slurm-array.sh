#!/bin/bash
# fksteer batch as a Slurm job array: one array task per shard of the prompts, all writing into
# one shared folder; a dependent job merges the shards' manifests.
#
#   JOB=$(sbatch --parsable docs/slurm-array.sh)
#   sbatch --dependency=afterok:$JOB --wrap 'fksteer batch merge --out out/batch out/batch'
#
# Extra arguments go to fksteer batch:  sbatch docs/slurm-array.sh --steps 30 --method fk ...
#
# fksteer reads its shard from SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
# SLURM_ARRAY_TASK_COUNT: task ID runs every COUNT-th prompt starting at ID - MIN. The array must
# be a contiguous range (0-3, 1-8, ...); fksteer refuses a list such as 1,5,9, naming the fix.
# A task that is requeued (preemption, node failure) or resubmitted with the same array index
# resumes: finished items are skipped. Exit codes: 0 done, 1 error, 2 bad usage, 3 some items
# failed (run the task again to retry them), 130 interrupted (scancel sends SIGTERM; finished
# items are kept).
#
#SBATCH --job-name=fksteer-batch
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=fksteer-%A_%a.log

set -euo pipefail

FKSTEER=${FKSTEER:-fksteer}       # the fksteer binary
PROMPTS=${PROMPTS:-prompts.txt}   # one prompt per line, or JSONL
OUT=${OUT:-out/batch}             # shared by all tasks

# Log lines instead of a progress bar: Slurm writes the output to a file.
exec "$FKSTEER" batch --prompts "$PROMPTS" --out "$OUT" --progress log "$@"
