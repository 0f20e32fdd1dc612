package bench_test

import (
	"os"
	"testing"

	"github.com/fksteer/fksteer/models/modeltest"
)

// TestMain gives the tests a cache of their own, where the glyphs model is built once.
func TestMain(m *testing.M) { os.Exit(modeltest.Main(m)) }
