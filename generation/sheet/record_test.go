package sheet

import (
	"slices"
	"testing"

	"github.com/fksteer/fksteer/pixels"
	"github.com/fksteer/fksteer/sampler"
)

// TestRowsLinkEachConvention: FK's evaluations show particles before resampling, so an
// evaluation's parents join the next row to it; kept evaluations (svdd, beam, dts) show the
// states a selection kept, so their parents join them to the row above, and the row after
// continues each slot from itself.
func TestRowsLinkEachConvention(t *testing.T) {
	imgs := pixels.NewImages(3, 1, 2, 2)
	res := &sampler.Result{Rewards: []float64{1, 2, 3}, All: imgs}
	for _, c := range []struct {
		name string
		kept bool
		want [][]int // the parents of each row: two evaluations, then the final row
	}{
		{"fk", false, [][]int{nil, {0, 0, 2}, {1, 1, 1}}},
		{"kept", true, [][]int{nil, {1, 1, 1}, {0, 1, 2}}},
	} {
		r := NewRecorder(3)
		for _, parents := range [][]int{{0, 0, 2}, {1, 1, 1}} {
			r.Observe(sampler.StepInfo{Evaluated: true, Kept: c.kept, Images: imgs, Rewards: []float64{0, 0, 0}, Parents: parents})
		}
		rows := r.rows(0, res)
		if len(rows) != 3 {
			t.Fatalf("%s: %d rows, want 3", c.name, len(rows))
		}
		for i, row := range rows {
			if !slices.Equal(row.Parents, c.want[i]) {
				t.Errorf("%s: row %d's parents %v, want %v", c.name, i, row.Parents, c.want[i])
			}
		}
	}
}
