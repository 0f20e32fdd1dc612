package sampler

import "github.com/fksteer/fksteer/pipelines"

// Search defaults (see Search's fields).
const (
	defaultSVDDCandidates = 4
	defaultBeamChildren   = 2
	defaultNeighbours     = 4
	defaultRounds         = 4
	defaultNoiseScale     = 0.5
	defaultIterations     = 16
	defaultWidening       = 1   // dts
	defaultStarWidening   = 0.5 // dts-star
	defaultExploration    = 1
)

// SizedByBudget reports whether a budget sets Particles (K) for the method.
func (m Method) SizedByBudget() bool {
	return m == Base || m == BestOfN || m == FK || m == Beam
}

// validateSearch fills the search settings' defaults for c.Method and checks them, naming the
// flags.
func (c *Config) validateSearch() error {
	s := &c.Search
	switch {
	case s.Budget < 0:
		return invalid("budget %d NFE must be positive, or 0 for none (--budget)", s.Budget)
	case s.Candidates < 0:
		return invalid("candidates %d must be positive (--candidates)", s.Candidates)
	case !finite(s.Alpha) || s.Alpha < 0:
		return invalid("alpha %g must be a finite number >= 0 (--alpha; 0 keeps the best candidate)", s.Alpha)
	case s.Every < 0:
		return invalid("beam interval %d must be positive (--beam-every)", s.Every)
	case s.Neighbours < 0 || s.Rounds < 0 || s.Iterations < 0:
		return invalid("neighbours, rounds and iterations must be positive (--neighbours, --rounds, --iterations)")
	case !finite(s.Scale) || s.Scale < 0:
		return invalid("noise scale %g must be a finite number > 0 (--noise-scale)", s.Scale)
	case !finite(s.Widening) || s.Widening < 0 || s.Widening > 1:
		return invalid("widening %g must lie in (0, 1] (--widening)", s.Widening)
	case !finite(s.Exploration) || s.Exploration < 0:
		return invalid("exploration %g must be a finite number >= 0 (--exploration)", s.Exploration)
	}
	switch c.Method {
	case SVDD:
		s.Candidates = cmp0(s.Candidates, defaultSVDDCandidates)
	case Beam:
		s.Candidates = cmp0(s.Candidates, defaultBeamChildren)
		s.Every = cmp0(s.Every, 1)
	case Noise, Random:
		s.Neighbours = cmp0(s.Neighbours, defaultNeighbours)
		s.Rounds = cmp0(s.Rounds, defaultRounds)
		if c.Method == Random {
			s.Rounds = 1
		}
		if s.Scale == 0 {
			s.Scale = defaultNoiseScale
		}
	case DTS, DTSStar:
		if s.Budget == 0 {
			s.Iterations = cmp0(s.Iterations, defaultIterations)
		}
		if s.Widening == 0 {
			s.Widening = defaultWidening
			if c.Method == DTSStar {
				s.Widening = defaultStarWidening
			}
		}
		if s.Exploration == 0 {
			s.Exploration = defaultExploration
		}
	}
	return nil
}

// cmp0 returns v, or def when v is 0.
func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// twins is the denoiser rows one state costs on a model described by info: 2 when classifier-free
// guidance runs (guidance > 1 on a conditional model, unless the class is the null class), else 1.
func (c Config) twins(info pipelines.Info) int {
	if c.Guidance <= 1 || info.Conditioning == pipelines.Unconditioned {
		return 1
	}
	if cl := c.CondOpts.Class; cl != nil && *cl == info.NullClass {
		return 1
	}
	// An empty prompt (and negative prompt) conditions on the null class or the empty text,
	// the unconditional side itself, so nothing is guided.
	if c.Prompt == "" && c.CondOpts.Negative == "" && c.CondOpts.Class == nil {
		return 1
	}
	return 2
}

// beamBranches reports whether beam search branches at step i (it never does at step 0, whose
// beams are distinct noises already).
func (c Config) beamBranches(i int) bool { return i > 0 && i%c.Search.Every == 0 }

// perUnit returns what one unit of the method's width costs per image, in states evaluated
// (guidance doubles them): a sample's steps for base, bon and fk; a beam's for beam (its first
// prediction, then C children at each branch step and 1 at the others); a round of neighbours
// for noise; one solve's steps for random and the others.
func (c Config) perUnit() int {
	n := c.StepsWalked()
	switch c.Method {
	case Beam:
		cost := 1
		for i := range n - 1 {
			if c.beamBranches(i + 1) {
				cost += c.Search.Candidates
			} else {
				cost++
			}
		}
		return cost
	case Noise:
		return c.Search.Neighbours * n
	}
	return n
}

// Cost returns the most NFE per image the run spends on a model described by info (its
// budget, for dts and dts-star sized by one).
func (c Config) Cost(info pipelines.Info) int {
	t, n, k := c.twins(info), c.StepsWalked(), c.Particles
	switch c.Method {
	case SVDD:
		return t * k * (1 + c.Search.Candidates*(n-1))
	case Noise:
		return t * c.Search.Rounds * c.Search.Neighbours * n
	case Random:
		return t * c.Search.Neighbours * n
	case DTS, DTSStar:
		if c.Search.Budget > 0 {
			return c.Search.Budget
		}
		return t * c.Search.Iterations * n
	}
	return t * k * c.perUnit()
}

// size sets the width the budget pays for on a model described by info (see Search.Budget),
// and checks what the sized width must hold.
func (c *Config) size(info pipelines.Info) error {
	if err := c.sizeBudget(info); err != nil {
		return err
	}
	if s := c.Search; (c.Method == Noise || c.Method == Random) && c.Particles > s.Neighbours*s.Rounds {
		return invalid("%s search solves %d noises (%d rounds of %d), fewer than the %d samples to keep (--particles)", c.Method, s.Neighbours*s.Rounds, s.Rounds, s.Neighbours, c.Particles)
	}
	return nil
}

// sizeBudget sets the width the budget pays for.
func (c *Config) sizeBudget(info pipelines.Info) error {
	b := c.Search.Budget
	if b == 0 {
		return nil
	}
	states := b / c.twins(info)
	unit, n := c.perUnit(), c.StepsWalked()
	var width int
	switch c.Method {
	case SVDD:
		if n == 1 {
			return invalid("svdd at 1 step has no step to choose candidates at: use bon (--method)")
		}
		width = (states/c.Particles - 1) / (n - 1)
		c.Search.Candidates = width
	case Noise:
		width = states / unit
		c.Search.Rounds = width
		if width == 0 && states >= n {
			// Too little for a round of N: one round of what fits, a random search.
			width, c.Search.Rounds, c.Search.Neighbours = 1, 1, states/n
		}
	case Random:
		width = states / unit
		c.Search.Neighbours = width
	case DTS, DTSStar:
		width = states / n
	default:
		width = states / unit
		c.Particles = width
	}
	if width < 1 {
		return invalid("a budget of %d NFE cannot pay for one %s sample of %d steps here (%d NFE): raise --budget or lower --steps",
			b, c.Method, n, c.twins(info)*max(unit, n))
	}
	return nil
}

// Observations is the number of times a run calls its Observer, for progress displays: once a
// step for most methods; once a step of every round for noise and random; for dts and
// dts-star, once for each of (at most 10) depths along the chosen paths, after the search.
func (c Config) Observations() int {
	n := c.StepsWalked()
	switch c.Method {
	case Noise, Random:
		return c.Search.Rounds * n
	case DTS, DTSStar:
		return min(10, n)
	}
	return n
}
