package sd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// hashExport fingerprints an export for provenance (PNG metadata, dataset manifests, batch
// resumption): the SHA-256 over every file's path, size and, for the JSON configs, tokenizer
// files and ONNX graphs, contents. External weight files (model.onnx_data, weights.pb and the
// like) count by path and size only: they can hold gigabytes, and reading them on every start
// would cost more than the run.
func hashExport(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), info.Size())
		switch strings.ToLower(filepath.Ext(path)) {
		case ".json", ".txt", ".onnx":
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fingerprint model folder %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
