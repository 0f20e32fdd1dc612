package potentials

import "github.com/fksteer/fksteer/internal/enum"

// Kind names a potential: how a particle's reward history becomes its log-potential at an
// intermediate evaluation step (see the package documentation for the formulas). All kinds use
// the same final correction, so they target the same distribution and differ only in how early
// and how hard they steer.
type Kind string

// The potential kinds. Strings are the names accepted by [ParseKind].
const (
	// Max weights by the best reward seen so far along the ancestry: lambda max(r_t, m_prev).
	Max Kind = "max"
	// Diff weights by the improvement of the reward: lambda_t r_t - lambda_prev r_prev. Its
	// potentials telescope, so its final correction is its ordinary formula.
	Diff Kind = "diff"
	// Sum weights by the running sum of rewards: lambda (r_t + s_prev).
	Sum Kind = "sum"
	// Immediate weights by the current reward only: lambda r_t.
	Immediate Kind = "immediate"
)

// DefaultKind is the reference implementation's default potential.
const DefaultKind = Diff

// Kinds lists every valid kind, in the order error messages list them.
func Kinds() []Kind { return []Kind{Max, Diff, Sum, Immediate} }

// ParseKind returns the kind named s, by [enum.Parse]'s rule (case-insensitive, surrounding space
// ignored), or an error that lists the valid names.
func ParseKind(s string) (Kind, error) { return enum.Parse("potential", s, Kinds()...) }
