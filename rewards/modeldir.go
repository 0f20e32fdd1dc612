package rewards

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fksteer/fksteer/models"
)

// DefaultModelDir is where rewards look for model files that their options do not name: the
// models folder of fksteer's cache (see [models.CacheDir]), where `fksteer models pull NAME`
// puts export NAME, e.g. ppocr-en/en_dict.txt. It is "" when no cache folder can be found.
func DefaultModelDir() string {
	cache, err := models.CacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "models")
}

// modelFile returns option key's path, or the default file rel (export/file) under the model
// folder. A default that does not exist is an error naming both ways to fix it.
func (e Env) modelFile(o *Options, key, rel string) (string, error) {
	if p := o.String(key, ""); p != "" {
		return p, nil
	}
	dir := e.ModelDir
	if dir == "" {
		dir = DefaultModelDir()
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			export, _, _ := strings.Cut(rel, "/")
			return "", fmt.Errorf("reward %s: option %s=PATH is not set and the default %s does not exist (set %s=PATH, or run `fksteer models pull %s`)", o.reward, key, p, key, export)
		}
		return "", fmt.Errorf("reward %s: %w", o.reward, err)
	}
	return p, nil
}
