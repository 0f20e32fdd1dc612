package generation

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fksteer/fksteer/models"
	"github.com/fksteer/fksteer/models/fetch"
	"github.com/fksteer/fksteer/pipelines"
)

// Kinds of Listing.
const (
	KindBuiltIn    = "built-in"
	KindConfigured = "configured"
	KindCatalog    = "catalog"
)

// Listing is one model a spec can name: `fksteer models list` prints them, the server's model
// routes answer them. Ready says whether a spec naming it runs without a download (a model
// file that exists, a pulled export, the built-in model, which is built on first use).
type Listing struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"` // built-in, configured, catalog
	Status      string `json:"status"`
	Ready       bool   `json:"-"`
	Path        string `json:"path,omitempty"`
	Description string `json:"description,omitempty"`
	License     string `json:"license,omitempty"`
	Bytes       int64  `json:"bytes,omitempty"`
	Checksums   string `json:"checksums,omitempty"`
	Use         string `json:"use,omitempty"`
}

// List lists the models a spec can name by name: the built-in one, the configured ones (sorted)
// and the catalog's, with whether each is ready. It builds, opens and downloads nothing.
func (e *Env) List() ([]Listing, error) {
	cache, err := models.CacheDir()
	if err != nil {
		return nil, err
	}
	g := Listing{Name: pipelines.GlyphsName, Kind: KindBuiltIn, Status: "built on first use", Ready: true,
		Description: "968 rendered 32x32 glyph images; the exact posterior-mean denoiser (the default model)"}
	// Listing builds nothing: a model file of any version in the cache counts as ready.
	if found, _ := filepath.Glob(filepath.Join(cache, "glyphs", "*", "model.onnx")); len(found) > 0 {
		g.Status, g.Path = "ready", found[len(found)-1]
	}
	out := []Listing{g}
	names := make([]string, 0, len(e.Models))
	for n := range e.Models {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		l := Listing{Name: n, Kind: KindConfigured, Path: e.Models[n], Status: "ready", Ready: true}
		if _, err := os.Stat(e.Models[n]); err != nil {
			l.Status, l.Ready = "missing", false
		}
		out = append(out, l)
	}
	for _, x := range fetch.Catalog() {
		l := Listing{Name: x.Name, Kind: KindCatalog, Status: "not pulled", Description: x.Description, License: x.License,
			Use: strings.ReplaceAll(x.Use, "{dir}", x.Dir(cache)), Checksums: "sha256 checked against the hub's stated digest"}
		for _, f := range x.Files {
			l.Bytes += f.Size
		}
		if x.Pinned() {
			l.Checksums = "sha256 pinned"
		}
		if x.Pulled(cache) {
			l.Status, l.Path, l.Ready = "pulled", x.Dir(cache), true
		}
		out = append(out, l)
	}
	return out, nil
}
