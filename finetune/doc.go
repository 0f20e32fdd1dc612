// Package finetune turns recorded sampling runs into training data for reward fine-tuning
// (DDPO, D3PO, PRDP, Flow-GRPO, Adv-GRPO, and trainers that reweight FK-steered samples).
//
// A run sampled with [sampler.Config.Record] holds every state x_T .. x_0 of every particle, each
// step's mean and standard deviation and the log-probability of the step taken. [NewGroups]
// turns such a run into [Group]s, one per prompt's group of samples, in memory: each sample's
// trajectory along its own ancestry (a prefix shared through resampling, a shared x_T or a shared
// trajectory prefix is stored once and referenced by index), its rewards (every part of a
// composite), and the tensors a trainer reads. [GroupAdvantages] gives the advantages DDPO and
// GRPO train on, [MakePairs] the preference pairs of D3PO and PRDP.
//
// [Writer] writes groups, in group order, as a dataset folder: safetensors shards that roll over
// at a size limit, a JSONL manifest with one row per sample, pairs and groups files, and each
// sample's image as PNG. Every file is written atomically, and the manifest names only complete
// files. [Export] drives the whole thing for a list of prompts in one of the [Mode]s as a batch
// job (package batch): each prompt's group is an item, sampled by a pool of workers, possibly
// in shards on several machines ([Merge] joins them), and kept with a record of its files'
// sha256, which is how an interrupted export resumes; the dataset is then assembled from the
// finished groups, so its bytes do not depend on workers, shards or interruptions.
// `fksteer export` is its command line. docs/datasets.md documents the layout, the tensor keys
// and how to load a dataset in PyTorch.
//
// The package knows nothing of the command line. It reads and writes the safetensors format
// itself ([WriteSafetensors], [ParseSafetensors]) for float32, float16 and int64 tensors.
package finetune
