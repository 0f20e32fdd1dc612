package schedule_test

import (
	"fmt"

	"github.com/fksteer/fksteer/schedule"
)

func ExampleTimesteps() {
	sd, _ := schedule.Timesteps(schedule.Leading, 1000, 10, 1)    // Stable Diffusion 1.5
	turbo, _ := schedule.Timesteps(schedule.Trailing, 1000, 4, 1) // SD-Turbo
	even, _ := schedule.Timesteps(schedule.Linspace, 1000, 4, 0)
	fmt.Println(sd)
	fmt.Println(turbo)
	fmt.Println(even)
	// Output:
	// [901 801 701 601 501 401 301 201 101 1]
	// [999 749 499 249]
	// [999 666 333 0]
}

func ExampleFlow_Levels() {
	levels, _ := schedule.Flow{Shift: 3}.Levels(4)
	for _, l := range levels {
		fmt.Printf("t=%.3f alpha=%.3f sigma=%.3f\n", l.Time, l.Alpha, l.Sigma)
	}
	// Output:
	// t=1.000 alpha=0.000 sigma=1.000
	// t=0.900 alpha=0.100 sigma=0.900
	// t=0.750 alpha=0.250 sigma=0.750
	// t=0.500 alpha=0.500 sigma=0.500
	// t=0.000 alpha=1.000 sigma=0.000
}
