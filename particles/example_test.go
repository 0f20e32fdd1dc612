package particles_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fksteer/fksteer/particles"
)

func ExampleESS() {
	uniform := []float64{0, 0, 0, 0}
	skewed := []float64{math.Log(1), math.Log(1), math.Log(2)} // weights 1, 1, 2
	oneHot := []float64{1000, math.Inf(-1), math.Inf(-1)}      // huge values are fine
	fmt.Printf("%.4f %.4f %.4f\n", particles.ESS(uniform), particles.ESS(skewed), particles.ESS(oneHot))
	// Output: 4.0000 2.6667 1.0000
}

func ExampleScheme_Resample() {
	// Weights 0.1, 0.2, 0.3, 0.4 (in log space), eight children. Systematic resampling gives
	// every particle floor or ceil of 8*w copies (0.8, 1.6, 2.4 and 3.2); which one depends on
	// the single uniform U drawn per call (here U is in [0.4, 0.8) for the first five calls).
	logw := []float64{math.Log(0.1), math.Log(0.2), math.Log(0.3), math.Log(0.4)}
	parents := make([]int, 8)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 7 {
		if err := particles.Systematic.Resample(rng, logw, parents); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(parents)
	}
	// Output:
	// [0 1 2 2 2 3 3 3]
	// [0 1 2 2 2 3 3 3]
	// [0 1 2 2 2 3 3 3]
	// [0 1 2 2 2 3 3 3]
	// [0 1 2 2 2 3 3 3]
	// [0 1 1 2 2 3 3 3]
	// [1 1 2 2 3 3 3 3]
}

func ExamplePopulation_Resample() {
	// One group of four particles, each state a single number.
	pop, err := particles.New(1, 4, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	reward := pop.AddFloat64("reward", 1) // rides along with the state
	copy(pop.X, []float32{10, 20, 30, 40})
	copy(reward, []float64{0.1, 0.2, 0.3, 0.4})

	// Step 3: particle 0 is dropped, particle 1 is duplicated.
	if err := pop.Resample(3, 0, []int{1, 1, 2, 3}); err != nil {
		fmt.Println(err)
		return
	}
	// Step 7: slots 0-2 copy slot 0 (originally particle 1), slot 3 copies slot 2.
	if err := pop.Resample(7, 0, []int{0, 0, 0, 2}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("X:", pop.X, "reward:", reward)
	fmt.Println("distinct roots:", pop.DistinctRoots(0))
	lineage := make([]int, 10)
	pop.Lineage(3, lineage)
	fmt.Println("row 3 by step:", lineage)
	for i := range pop.NumEvents() {
		e := pop.Event(i)
		fmt.Printf("step %d group %d parents %v\n", e.Step, e.Group, e.Parents)
	}
	// Output:
	// X: [20 20 20 30] reward: [0.2 0.2 0.2 0.3]
	// distinct roots: 2
	// row 3 by step: [2 2 2 2 2 2 2 2 3 3]
	// step 3 group 0 parents [1 1 2 3]
	// step 7 group 0 parents [0 0 0 2]
}
