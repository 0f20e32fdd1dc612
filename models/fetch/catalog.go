package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/internal/atomicfile"
	"github.com/fksteer/fksteer/internal/filehash"
	"github.com/fksteer/fksteer/internal/keys"
)

// Export is a known model export that `fksteer models pull` downloads from its public hosting.
type Export struct {
	Name        string
	Description string
	// License is the licence the source states, in a few words; "none stated" means the
	// weights may be used as local test data only.
	License string
	// Source is the page the files come from.
	Source string
	Files  []ExportFile
	// Manifest, when set, is written as manifest.yaml beside the files once they are all
	// downloaded, so that `--model NAME` runs the export.
	Manifest string
	// Use says how fksteer uses the export once pulled; {dir} stands for its folder.
	Use string
}

// ExportFile is one file of an export.
type ExportFile struct {
	// Path is the file's path inside the export's cache folder.
	Path string
	URL  string
	// SHA256 is pinned for files whose digest was checked against a copy here; "" for the
	// others, which are checked against the sha256 the hub states (see [Server]) where it
	// states one.
	SHA256 string
	Size   int64
}

// Pinned reports whether every file of the export has a pinned sha256.
func (e Export) Pinned() bool {
	for _, f := range e.Files {
		if f.SHA256 == "" {
			return false
		}
	}
	return true
}

// Dir is the export's folder in the cache: <cache>/models/<name>.
func (e Export) Dir(cacheDir string) string { return filepath.Join(cacheDir, "models", e.Name) }

// ManifestPath is where a pulled export's manifest is, or "" for exports without one.
func (e Export) ManifestPath(cacheDir string) string {
	if e.Manifest == "" {
		return ""
	}
	return filepath.Join(e.Dir(cacheDir), "manifest.yaml")
}

// Pulled reports whether a completed pull of the export is in the cache (its record exists and
// every file is present; digests are checked by [Pull], not here).
func (e Export) Pulled(cacheDir string) bool {
	rec, err := readPullRecord(e.Dir(cacheDir))
	if err != nil || len(rec.Files) != len(e.Files) {
		return false
	}
	for _, f := range e.Files {
		if _, err := os.Stat(filepath.Join(e.Dir(cacheDir), filepath.FromSlash(f.Path))); err != nil {
			return false
		}
	}
	return true
}

// Lookup returns the catalog's export of that name, or an error naming the closest one.
func Lookup(name string) (Export, error) {
	var names []string
	for _, e := range Catalog() {
		if e.Name == name {
			return e, nil
		}
		names = append(names, e.Name)
	}
	hint := ""
	if s := keys.Closest(name, names); s != "" {
		hint = fmt.Sprintf("did you mean %q? ", s)
	}
	return Export{}, fmt.Errorf("no known export named %q (%sknown: %s; see fksteer models list)", name, hint, strings.Join(names, ", "))
}

// pullRecord is written into an export's folder when a pull completes: what each file was
// checked against, so later pulls can skip files still intact.
type pullRecord struct {
	Files map[string]pulledFile `json:"files"`
}

type pulledFile struct {
	SHA256   string       `json:"sha256"`
	Bytes    int64        `json:"bytes"`
	Verified Verification `json:"verified"`
}

const pullRecordName = ".fksteer-pull.json"

func readPullRecord(dir string) (*pullRecord, error) {
	data, err := os.ReadFile(filepath.Join(dir, pullRecordName))
	if err != nil {
		return nil, err
	}
	var r pullRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Mirrored rewrites a URL to fetch it through a mirror: <mirror>/<host><path>, so one mirror
// (for example an internal HTTP cache of the hub and of GitHub) serves every export. An empty
// mirror leaves the URL as it is.
func Mirrored(raw, mirror string) (string, error) {
	if mirror == "" {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	m, err := url.Parse(strings.TrimSuffix(mirror, "/"))
	if err != nil || (m.Scheme != "http" && m.Scheme != "https") || m.Host == "" {
		return "", fmt.Errorf("mirror %q is not an http(s) URL", mirror)
	}
	m.Path += "/" + u.Host + u.Path
	m.RawQuery = u.RawQuery
	return m.String(), nil
}

// Pull downloads every file of e into e.Dir(cacheDir) (through mirror when it is set) and then
// writes its manifest and a pull record. Files already there and matching their pinned or
// recorded sha256 are not downloaded again; an interrupted pull continues where it stopped.
// It returns one Result per file, in e.Files order.
func Pull(ctx context.Context, c *Client, e Export, cacheDir, mirror string) ([]Result, error) {
	dir := e.Dir(cacheDir)
	old, _ := readPullRecord(dir)
	rec := &pullRecord{Files: map[string]pulledFile{}}
	var out []Result
	for _, ef := range e.Files {
		dest := filepath.Join(dir, filepath.FromSlash(ef.Path))
		if old != nil && ef.SHA256 == "" {
			if p, ok := old.Files[ef.Path]; ok {
				if sum, n, err := filehash.SHA256(dest); err == nil && sum == p.SHA256 && n == p.Bytes {
					out = append(out, Result{Path: dest, SHA256: sum, Bytes: n, Verified: p.Verified, Cached: true})
					rec.Files[ef.Path] = p
					continue
				}
			}
		}
		u, err := Mirrored(ef.URL, mirror)
		if err != nil {
			return out, err
		}
		res, err := c.Fetch(ctx, File{URL: u, Dest: dest, SHA256: ef.SHA256, Size: ef.Size})
		if err != nil {
			return out, fmt.Errorf("pull %s: %w", e.Name, err)
		}
		out = append(out, res)
		rec.Files[ef.Path] = pulledFile{SHA256: res.SHA256, Bytes: res.Bytes, Verified: res.Verified}
	}
	if e.Manifest != "" {
		if err := atomicfile.Write(e.ManifestPath(cacheDir), []byte(e.Manifest), 0o644); err != nil {
			return out, fmt.Errorf("pull %s: %w", e.Name, err)
		}
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return out, err
	}
	if err := atomicfile.Write(filepath.Join(dir, pullRecordName), data, 0o644); err != nil {
		return out, fmt.Errorf("pull %s: %w", e.Name, err)
	}
	return out, nil
}

// Catalog lists the exports fksteer knows how to download, sorted by name.
//
// Checksums: the files of mnist-dit-rf, mnist-cnn-classifier, ppocr-en and laion-aesthetic are
// pinned to the sha256 of copies checked here (their URLs name exact commits, so the bytes
// cannot change). The Hugging Face exports (stable-diffusion-v1-5, sd-turbo, dinov2-small) could
// not be downloaded here, so they are not pinned: their large files are checked against the
// sha256 the hub states for LFS files, and small text files (tokenizer, configs) are recorded
// unverified.
func Catalog() []Export {
	out := slices.Clone(catalog)
	slices.SortFunc(out, func(a, b Export) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func github(repo, commit, path string) string {
	return "https://raw.githubusercontent.com/" + repo + "/" + commit + "/" + path
}

func hub(repo, revision, path string) string {
	return "https://huggingface.co/" + repo + "/resolve/" + revision + "/" + path
}

func hubFiles(repo, revision string, paths ...string) []ExportFile {
	out := make([]ExportFile, len(paths))
	for i, p := range paths {
		out[i] = ExportFile{Path: p, URL: hub(repo, revision, p)}
	}
	return out
}

var sdComponents = []string{
	"model_index.json", "scheduler/scheduler_config.json",
	"tokenizer/merges.txt", "tokenizer/vocab.json", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
	"text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx",
}

var catalog = []Export{
	{
		Name:        "mnist-dit-rf",
		Description: "class-conditional rectified-flow DiT trained on MNIST (32x32, 1.5 MB); a real denoiser",
		License:     "none stated (local test use only)",
		Source:      "https://github.com/COLVERTYETY/SimpleDiTDemo",
		Files: []ExportFile{{Path: "model.onnx", Size: 1518965,
			URL:    github("COLVERTYETY/SimpleDiTDemo", "9f98dfb8c4ba5c261319d93753a72c8435572015", "docs/model.onnx"),
			SHA256: "c94c03dc6e52a974a3a3bfb9dd758ba9b0e0188728b547075b2b6534d25a49b1"}},
		Manifest: mnistManifest,
		Use:      "fksteer generate --model mnist-dit-rf --prompt 7",
	},
	{
		Name:        "mnist-cnn-classifier",
		Description: "MNIST CNN classifier (98.77% on the test set, 1.7 MB); a reward and a judge for MNIST models",
		License:     "none stated (local test use only)",
		Source:      "https://github.com/Baskov-Aleksey-Viktorovich/PyTorch-",
		Files: []ExportFile{{Path: "mnist-8.onnx", Size: 1688196,
			URL:    github("Baskov-Aleksey-Viktorovich/PyTorch-", "04913e1bbab985b49933ef5dc9574fd6db8552d6", "mnist-8.onnx"),
			SHA256: "5b995ebc7345ce5f2495330acd927d60ea6a963edb032ea00f2715e3388e78f2"}},
		Use: "--reward classifier:model={dir}/mnist-8.onnx,target=3,crop=28",
	},
	{
		Name:        "ppocr-en",
		Description: "PaddleOCR English text detector (PP-OCRv3 DB) and recogniser (CRNN) with its dictionary",
		License:     "Apache-2.0 (PaddleOCR weights, RapidOCR conversion)",
		Source:      "https://github.com/dflymegold/RapidOCR_ONNX, https://github.com/ssYanhuo/ocrweb",
		Files: []ExportFile{
			{Path: "en_PP-OCRv3_det_infer.onnx", Size: 2429472,
				URL:    github("dflymegold/RapidOCR_ONNX", "13d6a64b3a9fee61d9b9887d82fa88b7f674f1db", "models/en_PP-OCRv3_det_infer.onnx"),
				SHA256: "7ce951bb9abe19ba19527f8c1edf4181ebd0da05060ab962dd2b65500ae93fa5"},
			{Path: "en_number_mobile_v2.0_rec_infer.onnx", Size: 1882400,
				URL:    github("ssYanhuo/ocrweb", "4e3ed1d37983d837425af82d1138cef95344b355", "resources/models/en_number_mobile_v2.0_rec_infer.onnx"),
				SHA256: "7fea5a9eed6ca9f80ae6d26530b1c3308dc9ae42e652590f25865d17af99112f"},
			{Path: "en_dict.txt", Size: 190,
				URL:    github("dflymegold/RapidOCR_ONNX", "13d6a64b3a9fee61d9b9887d82fa88b7f674f1db", "models/en_dict.txt"),
				SHA256: "5662df9d2d03f0e8ca0d3b0649d6acbab904b6a14b3d3521463c71c37c668ce3"},
		},
		Use: "the OCR reward's models (text detection and recognition)",
	},
	{
		Name:        "laion-aesthetic-vitb32",
		Description: "LAION aesthetic predictor, linear head over CLIP ViT-B/32 image embeddings (2 KB)",
		License:     "Apache-2.0 (LAION aesthetic-predictor weights)",
		Source:      "https://github.com/OliverSogaard/cull",
		Files: []ExportFile{{Path: "laion_aesthetic.onnx", Size: 2275,
			URL:    github("OliverSogaard/cull", "f0e6ce7669e05c5906f9ba5c12c9ea5ef7d5117f", "src-tauri/models/laion_aesthetic.onnx"),
			SHA256: "a6f75f3efc309de7e5ad50761e8fea15415a44c929df0e188b8a8c5c053479d4"}},
		Use: "the head of an aesthetic reward (needs a CLIP ViT-B/32 image encoder)",
	},
	{
		Name:        "sd-turbo",
		Description: "SD-Turbo (distilled Stable Diffusion 2.1, 1-4 steps, no guidance), ONNX Runtime's export (~2.5 GB)",
		License:     "Stability AI Non-Commercial Research Community License",
		Source:      "https://huggingface.co/onnxruntime/sd-turbo",
		Files:       hubFiles("onnxruntime/sd-turbo", "6d0b4c16d1606606694b58681a91b0edf1415268", sdComponents...),
		Use:         "a Stable Diffusion export folder ({dir}): --model NAME or --model {dir}",
	},
	{
		Name:        "stable-diffusion-v1-5",
		Description: "Stable Diffusion 1.5, ONNX export in the diffusers/optimum layout (~5.5 GB)",
		License:     "CreativeML OpenRAIL-M",
		Source:      "https://huggingface.co/onnx-community/stable-diffusion-v1-5-ONNX",
		Files:       append(hubFiles("onnx-community/stable-diffusion-v1-5-ONNX", "main", sdComponents...), hubFiles("onnx-community/stable-diffusion-v1-5-ONNX", "main", "unet/weights.pb")...),
		Use:         "a Stable Diffusion export folder ({dir}): --model NAME or --model {dir}",
	},
	{
		Name:        "dinov2-small",
		Description: "DINOv2 ViT-S/14 image features (88 MB); for similarity to reference images",
		License:     "Apache-2.0",
		Source:      "https://huggingface.co/Xenova/dinov2-small",
		Files:       hubFiles("Xenova/dinov2-small", "bd222e886723524568931e43031f6d9327896fac", "onnx/model.onnx", "config.json", "preprocessor_config.json"),
		Use:         "image features for a reference-similarity reward (not in this version yet)",
	},
}

// ErrNotPulled is returned (wrapped) by [ResolveManifest] for a catalog export that has not
// been downloaded.
var ErrNotPulled = errors.New("not pulled")

// ResolveManifest returns the manifest of a pulled catalog export named name, for `--model
// NAME`. It returns "" and nil when no export of that name has a manifest, and an error wrapping
// ErrNotPulled, naming the pull command, when it has one but is not in the cache.
func ResolveManifest(name, cacheDir string) (string, error) {
	for _, e := range catalog {
		if e.Name != name || e.Manifest == "" {
			continue
		}
		if !e.Pulled(cacheDir) {
			return "", fmt.Errorf("model %s is %w: run `fksteer models pull %s`", name, ErrNotPulled, name)
		}
		return e.ManifestPath(cacheDir), nil
	}
	return "", nil
}

const mnistManifest = `# Written by fksteer models pull: the trained MNIST rectified-flow DiT
# (github.com/COLVERTYETY/SimpleDiTDemo). Every key is documented in docs/manifest.md.
name: mnist-dit-rf
model: model.onnx
inputs:
  sample: zt
  time: t
  cond: cond
output: output
prediction: flow
sample:
  shape: [1, 32, 32]
  range: [-1, 1]
time:
  kind: continuous
  noise: 1
  scale: 1
conditioning:
  kind: class
  classes: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
  null_class: 10
defaults:
  steps: 50
  guidance: 2
  sampler: euler
`
