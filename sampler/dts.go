package sampler

import (
	"context"
	"fmt"
	"math"

	"github.com/fksteer/fksteer/particles"
)

// runDTS is Diffusion Tree Sampling and, for Method DTSStar, Diffusion Tree Search (Jain et al.
// 2025; DESIGN.md section 6). Each group grows one tree; its final K rows are leaves chosen from
// it.
//
// The tree. Depth d holds states x at e.levels[d]; depth n holds clean samples (leaves). A
// virtual root's children are initial noises, so widening explores x_T too. A node keeps its
// state, visit count N, soft value v, its parent and children and, once predicted, its x0 and
// eps predictions, from which its step mean is recomputed (e.rule) whenever it branches again.
//
// One iteration descends from the root. A node visited N times may have ceil((N+1)^a) children
// (progressive widening, a = Search.Widening; +1 so that a node visited once may branch). A
// node with room EXPANDS: a new child by a stochastic step from it (the root: a new noise),
// then a ROLLOUT to depth n by the model's own steps; every rollout state joins the tree as a
// chain of single children, as in the paper, so no prediction is thrown away. A full node
// SELECTS a child: DTS draws it in proportion to exp(lambda v); DTS* takes the UCT maximum
// v + c sqrt(ln N_parent / N_child) (c = Search.Exploration). A node whose step draws no noise
// (the last DDIM step onto clean data) has room for one child only, and a descent that ends on
// an existing leaf is a revisit: it costs nothing and only counts the visit, which widens the
// nodes above it. The new leaf's value is its reward r(x0) (the final decoder; a reward that is
// not finite reads as -Inf, a sample of weight zero), and the BACKUP sets, along the path,
// N += 1 and the soft Bellman value v = (1/lambda) log mean_children exp(lambda v(child)), in
// float64; every child has been rolled out, so every child has a value.
//
// Final samples. DTS draws each of the K rows by an independent descent from the root in
// proportion to exp(lambda v): a leaf is chosen with probability exp(lambda r) times its
// weight under the tree's own prior (1 / the product of the child counts along its path),
// which tends to p(x0) exp(lambda r(x0)) / Z as the tree grows. How fast depends on the
// widening: the tree grows where its values are high, and a subtree keeps widening while its
// estimate is high but is left alone once a poor child has diluted it, so the draw leans toward
// the prior until every subtree that matters has many children (dts_test.go measures it; with
// a = 1 every descent opens a new noise and the draw is plain self-normalised importance
// sampling over independent rollouts). DTS* descends greedily by value; its K rows are K
// distinct leaves (the k-th greedy among the subtrees that still hold a leaf not taken), and
// when the tree has fewer than K leaves the choice repeats from the first.
//
// Batching. Iterations run in rounds: every group with budget left descends (no model call),
// then all rollouts advance together level by level, each level's states predicted in one
// model call (Predict takes one level per call), and the round's new leaves are scored in one
// reward call. A group whose iteration expands the root rolls out from depth 0; one that
// expands a node at depth d reuses that node's stored prediction and joins at depth d.
//
// Budget. With Search.Budget > 0 a group stops before the first iteration whose rollout would
// take its NFE (rows x twins per prediction) past the budget, and also after Budget/twins
// descents, so that a tree that widening keeps full still ends; otherwise it runs
// Search.Iterations descents (which also caps a budgeted run when set). Iterations count
// descents, revisits included. Whatever the budget, the first iteration is a full solve, so
// every tree has a leaf (anytime: the search can stop after any round).
//
// Randomness. Group g's noises (initial, expansions and rollouts alike) come from one extra
// stream of its seed, and its selections and final draws from its resampling stream, so a group
// samples the same whatever else is in the batch.
func runDTS(ctx context.Context, e *engine) error {
	s, err := newDTS(e)
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.descend() == 0 {
			break
		}
		if err := s.rollout(ctx); err != nil {
			return err
		}
		if err := s.scoreLeaves(ctx); err != nil {
			return err
		}
		s.backup()
	}
	if err := s.choose(); err != nil {
		return err
	}
	if e.rec != nil {
		s.record()
	}
	if e.cfg.Observer != nil {
		if err := s.observe(ctx); err != nil {
			return err
		}
	}
	return e.scoreFinal(ctx, false)
}

// dtsNode is a state of a tree: x at depth d (level e.levels[d]), or a clean sample at depth n
// (a leaf). The virtual root has depth -1 and no state.
type dtsNode struct {
	parent   *dtsNode
	children []*dtsNode
	depth    int
	visits   int
	// v is the soft value; a leaf's reward.
	v float64
	// leaves counts the leaves below (a leaf: 1); taken, those DTS* has already returned.
	leaves, taken int
	x             []float32
	// x0 and eps are the model's predictions at x, nil until made (and at leaves); data holds
	// them, beside x, from the node's creation.
	x0, eps, data []float32
}

// dtsTree is one group's tree and its progress.
type dtsTree struct {
	root *dtsNode
	// cur is where this round's iteration stands: the node its rollout continues from (a new
	// node, or the node it branches from), then its leaf; nil when the group sits the round out.
	cur   *dtsNode
	fresh bool // cur's leaf is new (not a revisit) and must be scored
	// spent is the group's NFE; descents its iterations.
	spent, descents int
	done            bool
}

// dtsSearch is a DTS run: the trees, the settings and the buffers of the batched steps,
// allocated once.
type dtsSearch struct {
	e    *engine
	star bool
	// lambda, widen and c are lambda, the widening exponent a and DTS*'s UCT constant.
	lambda, widen, c float64
	// budget is the NFE per group (0: none) and descents the iterations per group.
	budget, descents int
	trees            []dtsTree
	// noise fills row g with group g's extra stream; fill, gathered row j with its group's.
	noise, fill func(row int, dst []float32)
	stds        []float64 // the step std at each depth, NaN until a rollout took it
	x           []float32 // gathered states, rows*dim
	batch       []int     // the groups of the gathered rows
	logw        []float64
	pick        []int
	// paths holds each final row's path: paths[row][d] is its node at depth d = 0..n.
	paths [][]*dtsNode
}

func newDTS(e *engine) (*dtsSearch, error) {
	cfg := e.cfg
	s := &dtsSearch{e: e, star: cfg.Method == DTSStar, lambda: cfg.Lambda.Value,
		widen: cfg.Search.Widening, c: cfg.Search.Exploration, budget: cfg.Search.Budget,
		descents: cfg.Search.Iterations, trees: make([]dtsTree, e.groups),
		stds: make([]float64, e.n), x: make([]float32, e.rows*e.dim),
		batch: make([]int, 0, e.groups), pick: make([]int, 1)}
	if s.budget > 0 && s.descents == 0 {
		s.descents = s.budget / e.twins
	}
	var err error
	if s.noise, err = e.extraStreams(1); err != nil {
		return nil, err
	}
	s.fill = func(j int, dst []float32) { s.noise(s.batch[j], dst) }
	for d := range s.stds {
		s.stds[d] = math.NaN()
	}
	for g := range s.trees {
		s.trees[g].root = &dtsNode{depth: -1}
	}
	return s, nil
}

// room is the number of children node may have now.
func (s *dtsSearch) room(node *dtsNode) int {
	if node.depth >= 0 && s.stds[node.depth] == 0 {
		return 1
	}
	return int(math.Ceil(math.Pow(float64(node.visits+1), s.widen)))
}

// descend starts one iteration in every group that has budget left: from the root down to a
// node with room (its rollout then starts there) or to an existing leaf (a revisit). It
// returns the number of groups taking part in the round.
func (s *dtsSearch) descend() int {
	e, active := s.e, 0
	for g := range s.trees {
		t := &s.trees[g]
		if t.done || t.descents >= s.descents {
			t.done = true
			continue
		}
		node := t.root
		for node.depth < e.n && len(node.children) >= s.room(node) {
			node = s.selectChild(g, node)
		}
		cost := 0
		if node.depth < e.n {
			// A root expansion predicts at depths 0..n-1; a branch from depth d at d+1..n-1.
			cost = e.twins * (e.n - 1 - node.depth)
			if node.depth < 0 {
				cost = e.twins * e.n
			}
		}
		if s.budget > 0 && t.spent+cost > s.budget {
			t.done = true
			continue
		}
		t.spent += cost
		t.descents++
		active++
		t.fresh = node.depth < e.n
		if node.depth < 0 {
			node = s.newRootChild(g, node)
		}
		t.cur = node
	}
	return active
}

// newRootChild adds an initial state to group g's root: a new noise (noised Init for an
// image-to-image run).
func (s *dtsSearch) newRootChild(g int, root *dtsNode) *dtsNode {
	e := s.e
	child := &dtsNode{parent: root, depth: 0, data: make([]float32, 3*e.dim)}
	child.x = child.data[:e.dim]
	s.noise(g, child.x)
	if e.cfg.Init != nil {
		noisy(child.x, e.cfg.Init, e.levels[0])
	}
	root.children = append(root.children, child)
	return child
}

// selectChild picks the child a descent goes on to: in proportion to exp(lambda v) for DTS
// (uniformly while no child has a finite value), by UCT for DTS*.
func (s *dtsSearch) selectChild(g int, node *dtsNode) *dtsNode {
	if s.star {
		best, bestScore := node.children[0], math.Inf(-1)
		logN := math.Log(float64(node.visits))
		for _, c := range node.children {
			if score := c.v + s.c*math.Sqrt(logN/float64(c.visits)); score > bestScore {
				best, bestScore = c, score
			}
		}
		return best
	}
	return s.sample(g, node)
}

// sample draws a child of node in proportion to exp(lambda v) with group g's resampling
// stream, uniformly when no child has a finite value.
func (s *dtsSearch) sample(g int, node *dtsNode) *dtsNode {
	rng := s.e.streams.Resampler(g)
	s.logw = s.logw[:0]
	for _, c := range node.children {
		s.logw = append(s.logw, s.lambda*c.v)
	}
	if err := particles.Multinomial.Resample(rng, s.logw, s.pick); err != nil {
		// Only particles.ErrZeroWeights: no child has a finite value yet.
		return node.children[rng.IntN(len(node.children))]
	}
	return node.children[s.pick[0]]
}

// rollout advances every group's iteration to a leaf, level by level: at depth d it predicts,
// in one model call, the states that have no prediction yet (new nodes), adds the nodes the
// round branches from (their stored predictions), and steps them all, each into a new child.
func (s *dtsSearch) rollout(ctx context.Context) error {
	e, dim := s.e, s.e.dim
	for d := range e.n {
		// Rows to predict first, then the nodes that branch with their stored prediction.
		s.batch = s.batch[:0]
		for g := range s.trees {
			if cur := s.trees[g].cur; cur != nil && cur.depth == d && cur.x0 == nil {
				s.batch = append(s.batch, g)
			}
		}
		predicted := len(s.batch)
		for g := range s.trees {
			if cur := s.trees[g].cur; cur != nil && cur.depth == d && cur.x0 != nil {
				s.batch = append(s.batch, g)
			}
		}
		if len(s.batch) == 0 {
			continue
		}
		for j, g := range s.batch {
			cur := s.trees[g].cur
			copy(s.x[j*dim:(j+1)*dim], cur.x)
			if j >= predicted {
				copy(e.x0[j*dim:(j+1)*dim], cur.x0)
				copy(e.eps[j*dim:(j+1)*dim], cur.eps)
			}
		}
		if predicted > 0 {
			if err := e.predict(ctx, s.x, predicted, e.levels[d], e.x0, e.eps); err != nil {
				return fmt.Errorf("step %d/%d: %w", d+1, e.n, err)
			}
		}
		rows := len(s.batch)
		std := e.rule(d, e.mean[:rows*dim], s.x[:rows*dim], e.x0[:rows*dim], e.eps[:rows*dim], nil)
		s.stds[d] = std
		e.move(s.x, e.mean, std, rows, s.fill)
		// The round's new nodes at depth d+1, in one allocation.
		size := 3 * dim
		if d+1 == e.n {
			size = dim
		}
		nodes, data := make([]dtsNode, rows), make([]float32, rows*size)
		for j, g := range s.batch {
			cur := s.trees[g].cur
			if j < predicted {
				cur.x0, cur.eps = cur.data[dim:2*dim:2*dim], cur.data[2*dim:3*dim:3*dim]
				copy(cur.x0, e.x0[j*dim:(j+1)*dim])
				copy(cur.eps, e.eps[j*dim:(j+1)*dim])
			}
			child := &nodes[j]
			child.parent, child.depth = cur, d+1
			child.data = data[j*size : (j+1)*size : (j+1)*size]
			child.x = child.data[:dim:dim]
			copy(child.x, s.x[j*dim:(j+1)*dim])
			cur.children = append(cur.children, child)
			s.trees[g].cur = child
		}
	}
	return nil
}

// scoreLeaves scores the round's new leaves in one reward call.
func (s *dtsSearch) scoreLeaves(ctx context.Context) error {
	e, dim := s.e, s.e.dim
	s.batch = s.batch[:0]
	for g := range s.trees {
		if t := &s.trees[g]; t.cur != nil && t.fresh {
			copy(s.x[len(s.batch)*dim:], t.cur.x)
			s.batch = append(s.batch, g)
		}
	}
	if len(s.batch) == 0 {
		return nil
	}
	scores, err := e.score(ctx, s.x, len(s.batch), 1, false, nil, true)
	if err != nil {
		return err
	}
	for j, g := range s.batch {
		r := scores[j]
		if !finite(r) {
			r = math.Inf(-1)
		}
		s.trees[g].cur.v = r
	}
	return nil
}

// backup counts the visit along each iteration's path, from its leaf up, and recomputes the
// soft values there.
func (s *dtsSearch) backup() {
	for g := range s.trees {
		t := &s.trees[g]
		if t.cur == nil {
			continue
		}
		for node := t.cur; node != nil; node = node.parent {
			node.visits++
			if t.fresh {
				node.leaves++
			}
			if len(node.children) > 0 {
				node.v = s.softValue(node)
			}
		}
		t.cur = nil
	}
}

// softValue is (1/lambda) log mean_children exp(lambda v(child)).
func (s *dtsSearch) softValue(node *dtsNode) float64 {
	s.logw = s.logw[:0]
	for _, c := range node.children {
		s.logw = append(s.logw, s.lambda*c.v)
	}
	return (particles.LogSumExp(s.logw) - math.Log(float64(len(s.logw)))) / s.lambda
}

// choose picks every group's K final leaves (DTS: descents in proportion to exp(lambda v);
// DTS*: distinct greedy descents), copies them into the population and keeps their paths.
func (s *dtsSearch) choose() error {
	e := s.e
	s.paths = make([][]*dtsNode, e.rows)
	paths := make([]*dtsNode, e.rows*(e.n+1))
	for g := range s.trees {
		root := s.trees[g].root
		if math.IsInf(root.v, -1) {
			return fmt.Errorf("reward %s returned no finite score for any of the %d samples of image %d's tree: check the reward's model and options", e.cfg.Reward.Name(), root.leaves, g)
		}
		for k := range e.k {
			row := g*e.k + k
			var leaf *dtsNode
			switch {
			case !s.star:
				leaf = root
				for leaf.depth < e.n {
					leaf = s.sample(g, leaf)
				}
			case k < root.leaves:
				leaf = greedy(root, e.n)
			default:
				leaf = s.paths[g*e.k+k%root.leaves][e.n]
			}
			copy(e.pop.Row(row), leaf.x)
			path := paths[row*(e.n+1) : (row+1)*(e.n+1)]
			for node := leaf; node.depth >= 0; node = node.parent {
				path[node.depth] = node
			}
			s.paths[row] = path
		}
	}
	return nil
}

// greedy descends from root by the largest value among the children that still hold a leaf not
// taken, to depth n, and marks that leaf taken.
func greedy(root *dtsNode, n int) *dtsNode {
	node := root
	for node.depth < n {
		var best *dtsNode
		for _, c := range node.children {
			if c.taken < c.leaves && (best == nil || c.v > best.v) {
				best = c
			}
		}
		node = best
	}
	for p := node; p != nil; p = p.parent {
		p.taken++
	}
	return node
}

// record replays each final row's path into the recorder: the states at every depth, and the
// step means recomputed from each path node's state and predictions, as the search took them.
func (s *dtsSearch) record() {
	e, dim := s.e, s.e.dim
	next := make([]float32, e.rows*dim)
	for i := range e.n {
		for row, path := range s.paths {
			copy(s.x[row*dim:(row+1)*dim], path[i].x)
			copy(e.x0[row*dim:(row+1)*dim], path[i].x0)
			copy(e.eps[row*dim:(row+1)*dim], path[i].eps)
			copy(next[row*dim:(row+1)*dim], path[i+1].x)
		}
		e.rec.start(i, s.x)
		std := e.rule(i, e.mean, s.x, e.x0, e.eps, nil)
		e.rec.step(i, e.mean, next, std)
	}
}

// observe shows the observer the final rows' paths at about ten evenly spaced depths: each path
// node's x0 prediction (previewed) and soft value, the slots unmoved.
func (s *dtsSearch) observe(ctx context.Context) error {
	e, dim := s.e, s.e.dim
	values := make([]float64, e.rows)
	slots := make([]int, e.rows)
	for row := range slots {
		slots[row] = row % e.k
	}
	shown := min(10, e.n)
	for j := range shown {
		d := 0
		if shown > 1 {
			d = j * (e.n - 1) / (shown - 1)
		}
		for row, path := range s.paths {
			copy(e.x0[row*dim:(row+1)*dim], path[d].x0)
			values[row] = path[d].v
		}
		if err := e.decode(ctx, e.x0, e.rows, true); err != nil {
			return err
		}
		si := StepInfo{Step: d, Steps: e.n, From: e.levels[d], To: e.levels[d+1], Evaluated: true, Kept: true,
			Rewards: values, Images: e.images(e.rows), Parents: slots}
		if err := e.observe(ctx, si); err != nil {
			return err
		}
	}
	return nil
}
