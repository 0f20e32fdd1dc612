package potentials_test

import (
	"fmt"

	"github.com/fksteer/fksteer/particles"
	"github.com/fksteer/fksteer/potentials"
)

// Each potential on one particle whose rewards are 1, 3 and 2 at three evaluation steps, with
// lambda = 2; the third evaluation is the final step. Intermediate potentials differ by kind, but
// the final correction makes every kind's total lambda*r_final = 4.
func Example() {
	rewards := []float64{1, 3, 2}
	for _, kind := range potentials.Kinds() {
		pop, err := particles.New(1, 1, 1) // one group, one particle
		if err != nil {
			fmt.Println(err)
			return
		}
		pot, err := potentials.New(pop, kind)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%-10s", kind)
		logG := make([]float64, 1)
		for i, r := range rewards {
			final := i == len(rewards)-1
			if err := pot.Reweight(0, []float64{r}, 2, final, logG); err != nil {
				fmt.Println(err)
				return
			}
			fmt.Printf(" %5.1f", logG[0])
		}
		fmt.Printf("  total %.1f\n", pop.LogW[0])
	}
	// Output:
	// max          2.0   6.0  -4.0  total 4.0
	// diff         2.0   4.0  -2.0  total 4.0
	// sum          2.0   8.0  -6.0  total 4.0
	// immediate    2.0   6.0  -4.0  total 4.0
}

func ExampleSchedule_Evaluates() {
	s := potentials.Defaults() // every 5 steps from 5 to 30, then the final step
	for _, n := range []int{100, 20} {
		var steps []int
		for step := range n {
			if s.Evaluates(step, n) {
				steps = append(steps, step)
			}
		}
		fmt.Printf("%d steps: %v\n", n, steps)
	}
	// Output:
	// 100 steps: [5 10 15 20 25 30 99]
	// 20 steps: [5 10 15 19]
}

func ExampleLambda_At() {
	lam := potentials.Lambda{Value: 8, Start: 1, Ramp: potentials.Exponential}
	s := potentials.Schedule{Every: 10, Start: 10, End: 30}
	n := 50
	for step := range n {
		if i, ok := s.Evaluation(step, n); ok {
			fmt.Printf("step %d: lambda %.3g\n", step, lam.At(i, s.Evaluations(n)))
		}
	}
	// Output:
	// step 10: lambda 1
	// step 20: lambda 2
	// step 30: lambda 4
	// step 49: lambda 8
}
